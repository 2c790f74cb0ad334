#!/usr/bin/env bash
# Data-path benchmark: upload/download MB/s of 1 GiB and 4 GiB images through the real HTTP
# path with curl, peak RSS of the server during the 4 GiB upload and during 50 concurrent
# 100 MiB uploads, and GET /v2/images latency with 1,000 images — next to this machine's own
# reference rates measured in the same run (openssl sha512/md5, cat, dd).
#
#   benches/bench.sh [WORKDIR]     (default: a temporary directory; needs ~14 GiB free)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
release_build_in glance-bench "${1:-}"

# This VM's speed drifts by 10-20% from one minute to the next (one 3 s openssl sample read
# 321 MB/s, the next 424), so rates are the best of several samples: the machine's capability,
# and for the references the conservative choice.
echo "== reference rates (this machine, this run; best of several samples)"
sha512=0; md5=0; samples=""
for _ in 1 2 3; do
  speed=$(openssl speed -bytes 1048576 -seconds 2 sha512 md5 2>/dev/null)
  s=$(echo "$speed" | openssl_mbps sha512)
  m=$(echo "$speed" | openssl_mbps md5)
  samples="$samples $s"
  [ "$s" -gt "$sha512" ] && sha512=$s
  [ "$m" -gt "$md5" ] && md5=$m
done
# The upload pipeline's own hashers (its MD5 is not OpenSSL's where the CPU has AVX-512); the
# OpenSSL sha512 rate it measures beside them is one more sample.
digests=$(cargo bench -q --bench digests 2>/dev/null)
field() { awk -v algo="$1:" -v key="$2" '$1 == algo { for (i = 1; i < NF; i++) if ($i == key) print $(i + 1) }'; }
md5_pipe=$(echo "$digests" | field md5 pipeline)
s=$(echo "$digests" | field sha512 OpenSSL); samples="$samples $s"
[ "$s" -gt "$sha512" ] && sha512=$s
echo "openssl sha512 (1 core): $sha512 MB/s (samples:$samples); md5: $md5 MB/s"
echo "$digests"

for gib in 1 4; do
  f="$work/img-${gib}g.bin"
  [ -f "$f" ] || head -c $((gib << 30)) /dev/urandom >"$f"
done
f1="$work/img-1g.bin"; f4="$work/img-4g.bin"
cat "$f1" >/dev/null
read_all() { cat "$1" >/dev/null; }
# sha512_now: a 1 s sample of OpenSSL's sha512 rate, MB/s. Taken around each upload, so that
# upload and reference are compared at the same moment of this VM's drifting speed.
sha512_now() {
  openssl speed -bytes 1048576 -seconds 1 sha512 2>/dev/null | openssl_mbps sha512
}
# drop_cache FILE: evicts FILE's pages from the page cache.
drop_cache() {
  python3 -c 'import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)' "$1"
}
cat_rate=$(best_of 3 $((1 << 30)) read_all "$f1")
echo "cat 1 GiB (page cache): $cat_rate MB/s"
t0=$(now); dd if=/dev/zero of="$work/dd.bin" bs=1M count=1024 conv=fdatasync status=none; t1=$(now)
dd_rate=$(mbps $((1 << 30)) "$(secs "$t0" "$t1")")
rm -f "$work/dd.bin"
echo "dd write 1 GiB + fdatasync: $dd_rate MB/s"

# What the client side alone allows: curl fed over loopback by a minimal server that only
# calls sendfile(2), no HTTP framework, no store.
port_file="$work/sendfile.port"; rm -f "$port_file"
python3 - "$f1" "$port_file" <<'PY' &
import os, socket, sys
path, port_file = sys.argv[1], sys.argv[2]
size = os.path.getsize(path)
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
open(port_file, "w").write(str(s.getsockname()[1]))
fd = os.open(path, os.O_RDONLY)
for _ in range(3):
    c, _ = s.accept(); c.recv(65536)
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % size)
    off = 0
    while off < size:
        off += os.sendfile(c.fileno(), fd, off, size - off)
    c.close()
PY
sf_pid=$!
for _ in $(seq 1 50); do [ -s "$port_file" ] && break; sleep 0.1; done
fetch() { curl -sf "$1" -o /dev/null; }
sf_rate=$(best_of 3 $((1 << 30)) fetch "http://127.0.0.1:$(cat "$port_file")/")
wait $sf_pid
echo "curl from a bare sendfile server, 1 GiB: $sf_rate MB/s ($(ratio "$sf_rate" "$cat_rate") x cat)"

srv="$work/server"
rm -rf "$srv"
trap stop_servers EXIT
start_server "$srv" "$bin"
pid=$SERVER_PID url=$SERVER_URL

create() { create_image "$url" "$1"; }
upload() { curl -sf -X PUT "$url/v2/images/$1/file" -H 'Content-Type: application/octet-stream' -T "$2" -o /dev/null; }
rss_peak_reset() { echo 5 >/proc/$pid/clear_refs; }
cpu_ticks() { awk '{ print $14 + $15 }' /proc/$pid/stat; }
# thread_ticks: "tid ticks" for each of the server's threads (user + system CPU).
thread_ticks() {
  for t in /proc/$pid/task/*; do awk -v t="${t##*/}" '{ sub(/.*\) /, ""); print t, $12 + $13 }' "$t/stat" 2>/dev/null; done
}
# busiest_threads BEFORE AFTER BYTES SECONDS: the CPU seconds of the four busiest server threads
# between two thread_ticks; the busiest is the sha512 hasher (the slowest stage), whose MB per
# CPU-second is its speed inside the pipeline, and whose share of the elapsed time is the part
# of a core it got.
busiest_threads() {
  awk -v hz="$(getconf CLK_TCK)" -v b="$3" -v t="$4" 'NR == FNR { before[$1] = $2; next }
    { d[$1] = $2 - before[$1] } END {
      n = 0; for (k in d) v[++n] = d[k]
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] > v[i]) { x = v[i]; v[i] = v[j]; v[j] = x }
      printf "   busiest server threads (CPU s): %.2f %.2f %.2f %.2f of %.2f s; the busiest (sha512) hashed %.0f MB per CPU-second and ran %.0f%% of the time\n",
        v[1] / hz, v[2] / hz, v[3] / hz, v[4] / hz, t, b / 1e6 / (v[1] / hz), 100 * v[1] / hz / t }' "$1" "$2"
}
rss_peak() { awk '/VmHWM/ { printf "%.0f", $2/1024 }' /proc/$pid/status; }

echo "== glance-rs (release, SQLite, file store on $(df --output=fstype "$srv" | tail -1))"
# A server that has run before: the first upload after start-up also pays for growing the heap
# (~50,000 page faults), which a long-running server does not.
warm="$work/warm.bin"; head -c $((256 << 20)) "$f1" >"$warm"
id=$(create warm-up); upload "$id" "$warm"; curl -sf -X DELETE "$url/v2/images/$id"; rm -f "$warm"
for gib in 1 4; do
  f="$work/img-${gib}g.bin"; bytes=$((gib << 30))
  cat "$f" >/dev/null
  # 1 GiB: best of three uploads (each printed, with the sha512 rate sampled just before and
  # after it) and downloads; 4 GiB: one, long enough to average.
  runs=$((gib == 1 ? 3 : 1)); up=0; paired=()
  rss_peak_reset
  s_prev=$(sha512_now)
  for run in $(seq 1 $runs); do
    [ "$run" = 1 ] || curl -sf -X DELETE "$url/v2/images/$id"
    id=$(create "bench-$gib")
    thread_ticks >"$work/threads0"
    c0=$(cpu_ticks); s0=$(machine_busy); st0=$(machine_steal)
    t0=$(now); upload "$id" "$f"; t1=$(now)
    c1=$(cpu_ticks); s1=$(machine_busy); st1=$(machine_steal)
    thread_ticks >"$work/threads1"
    secs_n=$(secs "$t0" "$t1"); up_n=$(mbps $bytes "$secs_n")
    s_next=$(sha512_now)
    r=$(awk -v u="$up_n" -v a="$s_prev" -v b="$s_next" 'BEGIN { printf "%.2f", u / (a > b ? a : b) }')
    paired+=("$r")
    echo "   upload $run of $runs: $up_n MB/s; sha512 sampled just before and after: $s_prev / $s_next MB/s -> $r x"
    busiest_threads "$work/threads0" "$work/threads1" $bytes "$secs_n"
    s_prev=$s_next
    if [ "$up_n" -gt "$up" ]; then
      up=$up_n; up_secs=$secs_n; cpu0=$c0; cpu1=$c1; sys0=$s0; sys1=$s1; steal=$((st1 - st0))
    fi
  done
  peak=$(rss_peak)
  # Uploads bypass the page cache (O_DIRECT), so an image's first download reads the disk:
  # measured apart, next to cat of the stored file read from disk too; then from the cache.
  stored="$srv/images/$id"
  drop_cache "$stored"; cold_cat=$(best_of 1 $bytes read_all "$stored")
  drop_cache "$stored"; cold_down=$(best_of 1 $bytes fetch "$url/v2/images/$id/file")
  down=$(best_of "$runs" $bytes fetch "$url/v2/images/$id/file")
  pm=$(printf '%s\n' "${paired[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
  echo "$gib GiB: upload $up MB/s ($(ratio "$up" "$sha512") x sha512; $pm x the sha512 sampled around it), download $down MB/s ($(ratio "$down" "$cat_rate") x cat, $(ratio "$down" "$sf_rate") x bare sendfile), peak RSS during upload $peak MiB"
  echo "   first download, from disk: $cold_down MB/s; cat of the stored file from disk: $cold_cat MB/s ($(ratio "$cold_down" "$cold_cat") x)"
  # What bounds the upload: the two digests alone need 1/sha512 + 1/md5 seconds of CPU per
  # MB (md5 at the pipeline's rate); everything that ran (server, curl, kernel) used the
  # machine's two cores this much (during the best upload), and the hypervisor took this much
  # of their time for others (steal).
  awk -v srv=$((cpu1 - cpu0)) -v all=$((sys1 - sys0)) -v hz="$(getconf CLK_TCK)" -v b=$bytes \
    -v s="$sha512" -v m="$md5_pipe" -v t="$up_secs" -v st="$steal" 'BEGIN {
      mb = b / 1e6; hash = mb / s + mb / m
      printf "   upload CPU: server %.1f s (digests alone %.1f s at their speed above), whole machine %.1f s of %.1f s available (%.0f%% busy, %.0f%% stolen by the host)\n",
        srv / hz, hash, all / hz, 2 * t, 100 * all / hz / (2 * t), 100 * st / hz / (2 * t) }'
  curl -sf -X DELETE "$url/v2/images/$id"
done

echo "== 50 concurrent 100 MiB uploads"
head -c $((100 << 20)) "$f1" >"$work/img-100m.bin"
ids=()
for i in $(seq 1 50); do ids+=("$(create "conc-$i")"); done
rss_peak_reset
t0=$(now)
printf '%s\n' "${ids[@]}" | xargs -P 50 -I{} curl -sf -X PUT "$url/v2/images/{}/file" \
  -H 'Content-Type: application/octet-stream' -T "$work/img-100m.bin" -o /dev/null
t1=$(now)
echo "50 x 100 MiB: $(secs "$t0" "$t1") s, aggregate $(mbps $((50 * (100 << 20))) "$(secs "$t0" "$t1")") MB/s, peak RSS $(rss_peak) MiB"
active=$(curl -sf "$url/v2/images?status=active&limit=100" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["images"]))')
echo "active after the run: $active"
for id in "${ids[@]}"; do curl -sf -X DELETE "$url/v2/images/$id"; done

echo "== GET /v2/images latency with 1,000 images"
echo "creating 1,000 image records: $(fill_images "$url" 1000) ms each"
list_latency "$url"
echo "server RSS now: $(awk '/VmRSS/ { printf "%.0f", $2/1024 }' /proc/$pid/status) MiB"
