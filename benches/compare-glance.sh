#!/usr/bin/env bash
# glance-rs next to the real Glance 33 on this machine, in one run, the same requests to both,
# both validating Keystone tokens (the user `alice`, a member of p1), SQLite and the file store
# on the same disk; then the RBD store next to `rbd import`/`export` when CEPH_CONF is set.
# Prints the machine's own limits, then one table: each figure for Glance and glance-rs, the
# ratio, and the target it must meet.
#
# Per server, in the order users meet them: upload 1 GiB, download it at once (what Nova does
# with the image just uploaded), again (warm), and after the page cache is dropped (cold, beside
# `cat` of the stored file and a bare sendfile loop serving it: the disk's and the HTTP path's
# own ceilings); the server's RSS; 1,000 image records created, then GET /v2/images (default
# page, limit=1000, a property filter, a tag filter); 10 uploads of 1 GiB and 10 downloads of
# 1 GiB at once.
#
#   benches/compare-glance.sh [WORKDIR]   (Glance installed by scripts/glance.sh when missing,
#                                          a Keystone started by scripts/keystone.sh unless
#                                          OS_AUTH_URL names one; root, to drop the page cache;
#                                          ~25 GiB free)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
work=${1:-$(mktemp -d /tmp/glance-compare.XXXXXX)}
mkdir -p "$work"
features=(); [ -z "${CEPH_CONF:-}" ] || features=(--features rbd)
cargo build --release -q "${features[@]}"
bin=$PWD/target/release/glance-rs
gib=$((1 << 30))
# Keystone: the one named, or our own for this run.
keystone_in "$work"
TOKEN=$(curl -sf -i -X POST "$auth/auth/tokens" -H 'Content-Type: application/json' -d '{"auth":
  {"identity": {"methods": ["password"], "password": {"user": {"name": "alice",
   "password": "secret", "domain": {"id": "default"}}}},
   "scope": {"project": {"name": "p1", "domain": {"id": "default"}}}}}' |
  awk -F': ' 'tolower($1) == "x-subject-token" { print $2 }' | tr -d '\r')
export TOKEN
mapfile -t AUTH < <(auth_header)

g=$work/glance; rm -rf "$g"
stop_glance() { [ -d "$g" ] && scripts/glance.sh stop "$g" || true; }
bare_pid=""
cleanup() {
  stop_glance; stop_servers
  [ -z "$bare_pid" ] || kill "$bare_pid" 2>/dev/null || true
  [ -z "$ks_dir" ] || scripts/keystone.sh stop "$ks_dir" || true
  rm -rf "$g" "$work/rs" "$work/rbd"
}
trap cleanup EXIT

img=$work/img-1g.bin
[ -f "$img" ] || head -c $gib /dev/urandom >"$img"
read_all() { cat "$1" >/dev/null; }
# fetch URL: downloads the image; one that ends short (a rate computed on 1 GiB would be too
# high) is reported on stderr and fails.
fetch() {
  local got
  got=$(curl -sf "${AUTH[@]}" "$1" -o /dev/null -w '%{size_download}')
  [ "$got" = "$gib" ] || { echo "short download from $1: $got bytes, not $gib" >&2; return 1; }
}
# cold BYTES COMMAND...: the MB/s of COMMAND moving BYTES, the page cache dropped just before
# (the drop itself not timed).
cold() {
  local bytes=$1 t0 t1; shift
  drop_caches; t0=$(now); "$@"; t1=$(now)
  mbps "$bytes" "$(secs "$t0" "$t1")"
}
upload() { curl -sf -X PUT "${AUTH[@]}" "$1/v2/images/$2/file" -H 'Content-Type: application/octet-stream' -T "$img" -o /dev/null; }
delete() { curl -sf -X DELETE "${AUTH[@]}" "$1/v2/images/$2"; }
# rss PID...: resident MiB of these processes and their children (uWSGI's workers).
rss() {
  local pids; pids=$(for p in "$@"; do echo "$p"; pgrep -P "$p" || true; done)
  # shellcheck disable=SC2086
  ps -o rss= -p $(echo $pids | tr ' ' ,) | awk '{ s += $1 } END { printf "%.0f", s / 1024 }'
}
row() { printf '%s\t%s\t%s\n' "$1" "$2" "$3"; }

echo "== this machine, this run"
speed=$(openssl speed -bytes 1048576 -seconds 2 sha512 md5 2>/dev/null)
echo "openssl speed, one core: sha512 $(echo "$speed" | openssl_mbps sha512) MB/s, md5 $(echo "$speed" | openssl_mbps md5) MB/s"
cat_warm=$(best_of 3 $gib read_all "$img")
t0=$(now); dd if=/dev/zero of="$work/dd.bin" bs=1M count=1024 conv=fdatasync status=none; t1=$(now)
rm -f "$work/dd.bin"
echo "cat 1 GiB from the page cache: $cat_warm MB/s; dd write + fdatasync: $(mbps $gib "$(secs "$t0" "$t1")") MB/s (cold cat: measured beside the cold downloads)"
echo "NFS: not measured here: this kernel has neither nfs nor nfsd (/proc/filesystems), so Debian's nfs-kernel-server cannot export on loopback"

# Both servers run side by side, idle when not measured; each figure alternates between them
# (Glance, glance-rs, Glance, ...) and keeps each one's best, so that this VM's drift (its speed
# moves by a third from one minute to the next) falls on both alike.
GLANCE_AUTH_URL=$auth scripts/glance.sh start "$g" "$(free_port)" >"$work/glance.out"
glance_url=$(sed -n 's/^GLANCE_URL=//p' "$work/glance.out")
rm -rf "$work/rs"
start_server "$work/rs" "$bin" "[paste_deploy]" "flavor = keystone" "[keystone_authtoken]" \
  "www_authenticate_uri = $auth_base" "auth_url = $auth_base" "username = glance" \
  "password = secret" "project_name = service"
declare -A URL=([glance]=$glance_url [glance-rs]=$SERVER_URL)
declare -A PIDS=([glance]=$(cat "$g/uwsgi.pid") [glance-rs]=$SERVER_PID)
declare -A ID=([glance]="" [glance-rs]="")
declare -A BEST
NAMES=(glance glance-rs)
# keep NAME FIGURE VALUE [low]: remembers the best VALUE of NAME's FIGURE (the highest, or
# with `low` the lowest).
keep() {
  local k="$1|$2" old=${BEST["$1|$2"]:-}
  if [ -z "$old" ] || { [ "${4:-}" = low ] && awk -v a="$3" -v b="$old" 'BEGIN { exit !(a < b) }'; } ||
     { [ "${4:-}" != low ] && awk -v a="$3" -v b="$old" 'BEGIN { exit !(a > b) }'; }; then
    BEST[$k]=$3
  fi
}
FIGURES=()
figure() { local f; for f in "${FIGURES[@]}"; do [ "$f" = "$1" ] && return; done; FIGURES+=("$1"); }

for _ in 1 2 3; do
  for n in "${NAMES[@]}"; do
    url=${URL[$n]}
    [ -z "${ID[$n]}" ] || delete "$url" "${ID[$n]}"
    id=$(create_image "$url" bench); ID[$n]=$id
    c0=$(machine_busy); t0=$(now); upload "$url" "$id"; t1=$(now); c1=$(machine_busy)
    up=$(mbps $gib "$(secs "$t0" "$t1")")
    cpu=$(awk -v c=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", c / hz }')
    t0=$(now); fetch "$url/v2/images/$id/file"; t1=$(now)
    after=$(mbps $gib "$(secs "$t0" "$t1")")
    echo "   $n: upload $up MB/s ($cpu CPU-s), download just after $after MB/s" >&2
    keep "$n" "upload 1 GiB, MB/s" "$up"; keep "$n" "  CPU-seconds the machine spent on it" "$cpu" low
    keep "$n" "download right after the upload, MB/s" "$after"
  done
done
figure "upload 1 GiB, MB/s"; figure "  CPU-seconds the machine spent on it"
figure "download right after the upload, MB/s"
for _ in 1 2 3; do
  for n in "${NAMES[@]}"; do
    keep "$n" "download again (warm), MB/s" "$(best_of 1 $gib fetch "${URL[$n]}/v2/images/${ID[$n]}/file")"
  done
done
figure "download again (warm), MB/s"
# Cold: `cat` of the file glance-rs stores the image in, and the same file sent by the least an
# HTTP server can do (benches/sendfile-server.py), alternated with both servers. This VM's disk
# moves between ~0.6 and ~2.6 GB/s from one read to the next, hence five rounds.
stored=$work/rs/images/${ID[glance-rs]}
bare_port=$(mktemp "$work/bare.XXXXXX")
python3 benches/sendfile-server.py "$stored" >"$bare_port" & bare_pid=$!
for _ in $(seq 1 50); do [ -s "$bare_port" ] && break; sleep 0.1; done
bare_url=http://127.0.0.1:$(cat "$bare_port")/
for _ in 1 2 3 4 5; do
  keep cat "cold" "$(cold $gib read_all "$stored")"
  keep bare "cold" "$(cold $gib curl -sf "$bare_url" -o /dev/null)"
  for n in "${NAMES[@]}"; do
    keep "$n" "download, page cache dropped (cold), MB/s" "$(cold $gib fetch "${URL[$n]}/v2/images/${ID[$n]}/file")"
  done
done
# The HTTP path's own ceiling: the bare server with the file in the page cache. One
# connection's sending is serial (sendfile, and the loopback TCP work it does for the receiver,
# run on the sender's core), so its process's share of one core says whether a core bounds it.
read_all "$stored"
bare_warm=0 bare_core=0
for _ in 1 2 3; do
  c0=$(process_ticks "$bare_pid"); t0=$(now)
  curl -sf "$bare_url" -o /dev/null
  t1=$(now); c1=$(process_ticks "$bare_pid"); el=$(secs "$t0" "$t1"); r=$(mbps $gib "$el")
  [ "$r" -gt "$bare_warm" ] && { bare_warm=$r; bare_core=$(core_share $((c1 - c0)) "$el"); }
done
kill "$bare_pid"; wait "$bare_pid" 2>/dev/null || true; rm -f "$bare_port"
cat_cold=${BEST["cat|cold"]} bare_cold=${BEST["bare|cold"]}
figure "download, page cache dropped (cold), MB/s"
for n in "${NAMES[@]}"; do
  keep "$n" "server RSS after these, MiB" "$(rss ${PIDS[$n]})"
done
figure "server RSS after these, MiB"
# 1,000 records each, ten alternating batches of 100.
declare -A CREATE=([glance]=0 [glance-rs]=0)
for _ in $(seq 1 10); do
  for n in "${NAMES[@]}"; do
    CREATE[$n]=$(awk -v a="${CREATE[$n]}" -v b="$(fill_images "${URL[$n]}" 100)" 'BEGIN { print a + b / 10 }')
  done
done
for n in "${NAMES[@]}"; do keep "$n" "create an image record, ms (mean of 1,000)" "${CREATE[$n]}" low; done
figure "create an image record, ms (mean of 1,000)"
# GET /v2/images, each query sent to both in turns; the p50 of each.
python3 - "${URL[glance]}" "${URL[glance-rs]}" >"$work/lists" <<'PY'
import os, statistics, sys, time, urllib.request
urls = {"glance": sys.argv[1], "glance-rs": sys.argv[2]}
auth = {"X-Auth-Token": os.environ["TOKEN"]}
for q, label in (("", "default page (25)"), ("?limit=1000", "limit=1000"),
                 ("?os_distro=bench&sort=name:asc&limit=25", "property filter, sort by name"),
                 ("?tag=a&limit=25", "tag filter")):
    times = {n: [] for n in urls}
    for _ in range(4 if "1000" in q else 40):
        for n, u in urls.items():
            for _ in range(5):
                t = time.perf_counter()
                urllib.request.urlopen(urllib.request.Request(u + "/v2/images" + q, headers=auth)).read()
                times[n].append(time.perf_counter() - t)
    for n in urls:
        print("%s\tGET /v2/images %s, p50 ms\t%.1f" % (n, label, 1000 * statistics.median(times[n])))
PY
while IFS=$'\t' read -r n f v; do keep "$n" "$f" "$v" low; figure "$f"; done <"$work/lists"
# Many at once: one server at a time (each takes the machine), glance-rs second.
for n in "${NAMES[@]}"; do
  m=$(python3 benches/mixed.py "${URL[$n]}" "$img" "${ID[$n]}" 10 ${PIDS[$n]})
  echo "   $n: 10 uploads + 10 downloads at once: $m" >&2
  field() { echo "$m" | python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
  keep "$n" "10 uploads + 10 downloads of 1 GiB at once, MB/s" "$(field mbps)"
  keep "$n" "  peak RSS meanwhile, MiB" "$(field peak_rss_mib)" low
  keep "$n" "  failed transfers" "$(field failures)" low
  for i in $(echo "$m" | python3 -c 'import json,sys; print(" ".join(json.load(sys.stdin)["ids"]))'); do
    delete "${URL[$n]}" "$i" || true
  done
done
figure "10 uploads + 10 downloads of 1 GiB at once, MB/s"; figure "  peak RSS meanwhile, MiB"
figure "  failed transfers"
stop_glance; stop_servers; SERVER_PIDS=()
for f in "${FIGURES[@]}"; do
  for n in "${NAMES[@]}"; do row "$n" "$f" "${BEST["$n|$f"]}"; done
done >"$work/figures"

rbd_rows="" rbd_cpu=""
if [ -n "${CEPH_CONF:-}" ]; then
  need_time
  hz=$(getconf CLK_TCK)
  rbd_() { timeout 300 rbd -c "$CEPH_CONF" "$@"; }
  # timed OUT COMMAND...: runs COMMAND (its CPU-seconds into OUT), then sets RATE (MB/s of
  # 1 GiB) and SPENT: the OSD's CPU-seconds and the machine's idle share meanwhile.
  timed() {
    local out=$1 t0 t1 m0 m1 o0 o1; shift
    m0=$(head -1 /proc/stat); o0=$(osd_ticks "$CEPH_CONF")
    t0=$(now); /usr/bin/time -f "%U %S" -o "$out" "$@"; t1=$(now)
    m1=$(head -1 /proc/stat); o1=$(osd_ticks "$CEPH_CONF")
    RATE=$(mbps $gib "$(secs "$t0" "$t1")")
    SPENT="$(awk '{ print $1 + $2 }' "$out") CPU-s, the OSD $(awk -v t=$((o1 - o0)) -v hz="$hz" 'BEGIN { printf "%.2f", t / hz }') CPU-s, machine idle $(idle_share "$m0" "$m1")%"
  }
  rm -rf "$work/rbd"; start_server "$work/rbd" "$bin" "default_store = rbd" \
    "rbd_store_pool = images" "rbd_store_ceph_conf = $CEPH_CONF" "rbd_store_chunk_size = ${rbd_object_size%M}"
  imp=0; exp=0; imp_digests=0; up=0; down=0
  # Three rounds, each the rbd CLI then glance-rs, so that the VM's drift meets both alike; the
  # best of each, and where the CPU went in the fastest download of each.
  for round in 1 2 3; do
    name="bench-import-$$-$round"
    timed "$work/cli.cpu" timeout 300 rbd -c "$CEPH_CONF" import --no-progress --object-size "$rbd_object_size" "$img" "images/$name"
    [ "$RATE" -gt "$imp" ] && imp=$RATE
    timed "$work/cli.cpu" timeout 300 rbd -c "$CEPH_CONF" export --no-progress "images/$name" - >/dev/null
    [ "$RATE" -gt "$exp" ] && { exp=$RATE; exp_cpu="rbd export $RATE MB/s: rbd $SPENT"; }
    rbd_ rm --no-progress "images/$name" >/dev/null
    r=$(import_beside_digests "$CEPH_CONF" "$img"); [ "$r" -gt "$imp_digests" ] && imp_digests=$r
    id=$(TOKEN="" create_image "$SERVER_URL" rbd)
    timed "$work/curl.cpu" curl -sf -X PUT "$SERVER_URL/v2/images/$id/file" -H 'Content-Type: application/octet-stream' -T "$img"
    [ "$RATE" -gt "$up" ] && up=$RATE
    threads "$SERVER_PID" >"$work/threads0"; t0=$(now)
    timed "$work/curl.cpu" curl -sf "$SERVER_URL/v2/images/$id/file" -o /dev/null
    threads "$SERVER_PID" >"$work/threads1"; el=$(secs "$t0" "$(now)")
    [ "$RATE" -gt "$down" ] && { down=$RATE; down_cpu="glance-rs $RATE MB/s: curl $SPENT; the server's threads:
$(thread_cpu "$hz" "$el" "$work/threads0" "$work/threads1")"; }
    curl -sf -X DELETE "$SERVER_URL/v2/images/$id"
  done
  stop_servers
  rbd_rows=$(printf 'RBD upload 1 GiB (MD5 and sha512 too), MB/s\t%s\t%s\t>= 0.8 x rbd import\n  vs rbd import with openssl digests beside it\t%s\t%s\t>= 0.8\nRBD download 1 GiB, MB/s\t%s\t%s\t>= 0.9 x rbd export\n' "$imp" "$up" "$imp_digests" "$up" "$exp" "$down")
  rbd_cpu=$(printf 'Where the CPU went in the fastest RBD download of each (best of 3, alternated):\n%s\n%s\n' "$exp_cpu" "$down_cpu")
fi

echo "cat 1 GiB from the disk (page cache dropped), best of 5 beside the cold downloads: $cat_cold MB/s"
echo "the same file sent cold by a bare os.sendfile loop (benches/sendfile-server.py) to curl, best of 5: $bare_cold MB/s"
echo "the same bare server with the file in the page cache (the HTTP path's ceiling on one connection), best of 3: $bare_warm MB/s, its process busy $bare_core% of one core"
echo "== Glance 33.0.0 (uWSGI, 2 processes) and glance-rs, same machine, same requests, Keystone tokens"
awk -F'\t' -v cat_cold="$cat_cold" -v bare_cold="$bare_cold" -v rbd="$rbd_rows" '
  { v[$2, $1] = $3; if (!seen[$2]++) order[++n] = $2 }
  END {
    printf "%-52s %9s %9s %7s  %s\n", "", "Glance", "glance-rs", "ratio", "target"
    for (i = 1; i <= n; i++) {
      k = order[i]; a = v[k, "glance"]; b = v[k, "glance-rs"]
      # How many times better glance-rs is: higher rates, lower times, memory and CPU.
      r = (k ~ /MB\/s/) ? b / a : (a > 0 && b > 0 ? a / b : 0)
      t = ""
      if (k ~ /right after|warm/) t = ">= 1.2"
      if (k ~ /GET/) t = ">= 10"
      if (k ~ /cold/) t = sprintf(">= 0.9 x cold cat (%s): %.2f; bare sendfile (%s): %.2f", cat_cold, b / cat_cold, bare_cold, b / bare_cold)
      if (k ~ /failed/) { r = 0; t = "0" }
      printf "%-52s %9s %9s %6.1fx  %s\n", k, a, b, r, t
    }
    if (rbd != "") {
      printf "\n%-52s %9s %9s %7s  %s\n", "", "rbd CLI", "glance-rs", "ratio", "target"
      m = split(rbd, lines, "\n")
      for (i = 1; i <= m; i++) {
        split(lines[i], f, "\t")
        printf "%-52s %9s %9s %6.2fx  %s\n", f[1], f[2], f[3], f[3] / f[2], f[4]
      }
    }
  }' "$work/figures"
[ -z "$rbd_cpu" ] || echo "$rbd_cpu"
