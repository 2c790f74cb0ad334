#!/usr/bin/env bash
# RBD data path: upload/download MB/s of a 1 GiB image through glance-rs (curl, HTTP) next to
# `rbd import` / `rbd export` of the same file into the same pool, in one run; then the
# server's peak RSS during 20 concurrent 100 MiB uploads and during their downloads.
#
#   CEPH_CONF=... benches/bench-rbd.sh [WORKDIR]   (scripts/ceph.sh start DIR prints CEPH_CONF)
set -euo pipefail
cd "$(dirname "$0")/.."
: "${CEPH_CONF:?set CEPH_CONF (scripts/ceph.sh start DIR)}"
work=${1:-$(mktemp -d /tmp/glance-bench-rbd.XXXXXX)}
mkdir -p "$work"
cargo build --release -q --features rbd
bin=$PWD/target/release/glance-rs
. benches/lib.sh
need_time
rbd_() { timeout 300 rbd -c "$CEPH_CONF" "$@"; }
hz=$(getconf CLK_TCK)
speed=$(openssl speed -bytes 1048576 -seconds 2 sha512 md5 2>/dev/null)
sha512=$(echo "$speed" | openssl_mbps sha512)
md5=$(echo "$speed" | openssl_mbps md5)

f="$work/img-1g.bin"; bytes=$((1 << 30))
[ -f "$f" ] || head -c $bytes /dev/urandom >"$f"
cat "$f" >/dev/null

name="bench-import-$$"
o0=$(osd_ticks "$CEPH_CONF")
t0=$(now); /usr/bin/time -f "%U %S" -o "$work/import.cpu" timeout 300 rbd -c "$CEPH_CONF" import --no-progress --object-size "$rbd_object_size" "$f" "images/$name"; t1=$(now)
imp=$(mbps $bytes "$(secs "$t0" "$t1")")
osd_imp=$(( $(osd_ticks "$CEPH_CONF") - o0 ))
rbd_cpu=$(awk '{ print $1 + $2 }' "$work/import.cpu")
t0=$(now); rbd_ export --no-progress "images/$name" - >/dev/null; t1=$(now)
exp=$(mbps $bytes "$(secs "$t0" "$t1")")
rbd_ rm --no-progress "images/$name" >/dev/null
digests_imp=$(import_beside_digests "$CEPH_CONF" "$f")
echo "rbd import: $imp MB/s; with openssl computing MD5 and sha512 beside it: $digests_imp MB/s; rbd export: $exp MB/s"

srv="$work/server"; rm -rf "$srv"
trap stop_servers EXIT
start_server "$srv" "$bin" "default_store = rbd" "rbd_store_pool = images" \
  "rbd_store_ceph_conf = $CEPH_CONF" "rbd_store_chunk_size = ${rbd_object_size%M}"
pid=$SERVER_PID url=$SERVER_URL
id=$(create_image "$url" b)
o0=$(osd_ticks "$CEPH_CONF"); s0=$(process_ticks "$pid"); threads "$pid" >"$work/threads0"; m0=$(head -1 /proc/stat)
t0=$(now); /usr/bin/time -f "%U %S" -o "$work/curl.cpu" curl -sf -X PUT "$url/v2/images/$id/file" -H 'Content-Type: application/octet-stream' -T "$f"; t1=$(now)
m1=$(head -1 /proc/stat); threads "$pid" >"$work/threads1"
up_secs=$(secs "$t0" "$t1"); up=$(mbps $bytes "$up_secs")
osd_up=$(( $(osd_ticks "$CEPH_CONF") - o0 )); srv_up=$(( $(process_ticks "$pid") - s0 ))
curl_cpu=$(awk '{ print $1 + $2 }' "$work/curl.cpu")
t0=$(now); curl -sf "$url/v2/images/$id/file" -o /dev/null; t1=$(now)
down=$(mbps $bytes "$(secs "$t0" "$t1")")
curl -sf -X DELETE "$url/v2/images/$id"
echo "glance-rs on RBD: upload $up MB/s ($(ratio "$up" "$imp") x rbd import, $(ratio "$up" "$digests_imp") x rbd import beside the digests), download $down MB/s ($(ratio "$down" "$exp") x rbd export)"
# What bounds the upload on this machine's two cores: glance-rs must also compute MD5 and
# sha512 (at openssl speed), which rbd import does not; the OSD runs on the same cores.
awk -v b=$bytes -v s="$sha512" -v m="$md5" -v hz="$hz" -v oi="$osd_imp" -v rc="$rbd_cpu" \
  -v ou="$osd_up" -v su="$srv_up" -v imp="$imp" 'BEGIN {
    mb = b / 1e6; hash = mb / s + mb / m
    printf "CPU per GiB: rbd import %.1f s (client) + %.1f s (OSD); glance-rs %.1f s (server, of which digests %.1f s at openssl speed %s/%s MB/s) + %.1f s (OSD)\n",
      rc, oi / hz, su / hz, hash, s, m, ou / hz
    ceil = mb / ((hash + rc + oi / hz) / 2)
    printf "CPU-bound ceiling for an upload that hashes (digests + rbd import'"'"'s own CPU, over 2 cores): %.0f MB/s = %.2f x rbd import\n", ceil, ceil / imp }'

# Per thread, and how busy the machine was: a thread near 100% of the elapsed time, or a machine
# without idle time, is the bound; idle time with no thread saturated is waiting (the OSD).
echo "the upload's CPU seconds per server thread (over $up_secs s), then curl's and the OSD's:"
thread_cpu "$hz" "$up_secs" "$work/threads0" "$work/threads1"
echo "  curl $curl_cpu s; OSD $(awk -v o="$osd_up" -v hz="$hz" 'BEGIN { printf "%.2f", o / hz }') s"
echo "  the machine was idle $(idle_share "$m0" "$m1")% of the upload (both cores)"
# The target's arithmetic: at 0.8 x rbd import, 1 GiB must go in (1 / 0.8) x import's time, which
# gives two cores that many CPU-seconds; the digests (at openssl speed), the OSD's share and
# curl's must fit in them.
awk -v b=$bytes -v s="$sha512" -v m="$md5" -v hz="$hz" -v imp="$imp" -v ou="$osd_up" -v cc="$curl_cpu" 'BEGIN {
  mb = b / 1e6; secs = mb / (0.8 * imp); hash = mb / s + mb / m
  printf "at 0.8 x rbd import (%.0f MB/s) the machine has %.1f CPU-s for 1 GiB; digests %.1f + OSD %.1f + curl %.1f = %.1f s are needed before any HTTP or librados work\n",
    0.8 * imp, 2 * secs, hash, ou / hz, cc, hash + ou / hz + cc }'

# Memory with many transfers at once: each keeps object-sized (8 MiB) operations in flight,
# beyond its first out of a budget they share.
n=20
head -c $((100 << 20)) /dev/urandom >"$work/img-100m.bin"
ids=(); for i in $(seq 1 $n); do ids+=("$(create_image "$url" "conc-$i")"); done
echo 5 >"/proc/$pid/clear_refs"
t0=$(now)
printf '%s\n' "${ids[@]}" | xargs -P $n -I{} curl -sf -X PUT "$url/v2/images/{}/file" \
  -H 'Content-Type: application/octet-stream' -T "$work/img-100m.bin" -o /dev/null
t1=$(now)
peak=$(awk '/VmHWM/ { printf "%.0f", $2/1024 }' "/proc/$pid/status")
echo "$n concurrent 100 MiB uploads: $(secs "$t0" "$t1") s, peak RSS $peak MiB"
echo 5 >"/proc/$pid/clear_refs"
t0=$(now)
printf '%s\n' "${ids[@]}" | xargs -P $n -I{} curl -sf "$url/v2/images/{}/file" -o /dev/null
t1=$(now)
peak=$(awk '/VmHWM/ { printf "%.0f", $2/1024 }' "/proc/$pid/status")
echo "$n concurrent 100 MiB downloads: $(secs "$t0" "$t1") s, peak RSS $peak MiB"
sleep 1
echo "RSS a second later: $(awk '/VmRSS/ { printf "%.0f", $2/1024 }' "/proc/$pid/status") MiB"
for i in "${ids[@]}"; do curl -sf -X DELETE "$url/v2/images/$i"; done
rm -f "$work/img-100m.bin"
