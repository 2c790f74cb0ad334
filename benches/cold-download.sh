#!/usr/bin/env bash
# The cold download (page cache dropped) and what bounds it. ROUNDS rounds (5) of: `cat` of the
# file the file store holds the image in, the same file sent by the least an HTTP server can do
# (benches/sendfile-server.py, one os.sendfile loop) to curl, and glance-rs sending it to curl,
# each after the page cache is dropped; then three warm rounds of both servers (the HTTP path's
# own ceiling). Per transfer: MB/s, how busy the disk was (its io_ticks), how idle the machine,
# curl's CPU, and for the servers their CPU as a share of one core (one connection's sending is
# serial: sendfile and the loopback TCP work it does for the receiver run on the sender's core,
# whichever of glance-rs's threads makes the call), and glance-rs's threads. A server near 100%
# of a core, or a machine without idle time, is a CPU bound; a disk near 100% busy, the disk's.
# With BASE_BIN=another build of glance-rs, that one is measured too, alternated with this
# tree's in every round (to keep a change only once it is measured).
#
#   [BASE_BIN=...] benches/cold-download.sh [WORKDIR] [ROUNDS]   (root: it drops the page cache)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_time
release_build_in cold-download "${1:-}"
rounds=${2:-5}
gib=$((1 << 30))
hz=$(getconf CLK_TCK)

bare_pid=""
cleanup() {
  stop_servers
  [ -z "$bare_pid" ] || kill "$bare_pid" 2>/dev/null || true
  rm -rf "$work/glance-rs" "$work/baseline"
}
trap cleanup EXIT
img=$work/img-1g.bin
[ -f "$img" ] || head -c $gib /dev/urandom >"$img"
# serve NAME BIN: a server of BIN holding the image; sets URL, PID, STORED for NAME.
declare -A URL PID STORED
serve() {
  local d=$work/$1 id; rm -rf "$d"
  start_server "$d" "$2"
  id=$(create_image "$SERVER_URL" cold)
  curl -sf -X PUT "$SERVER_URL/v2/images/$id/file" -H 'Content-Type: application/octet-stream' -T "$img"
  URL[$1]=$SERVER_URL/v2/images/$id/file PID[$1]=$SERVER_PID STORED[$1]=$d/images/$id
}
names=(glance-rs)
serve glance-rs "$bin"
if [ -n "${BASE_BIN:-}" ]; then names+=(baseline); serve baseline "$BASE_BIN"; fi
stored=${STORED[glance-rs]}
bare_port=$(mktemp "$work/bare.XXXXXX")
python3 benches/sendfile-server.py "$stored" >"$bare_port" & bare_pid=$!
for _ in $(seq 1 50); do [ -s "$bare_port" ] && break; sleep 0.1; done
bare_url=http://127.0.0.1:$(cat "$bare_port")/
PID[bare]=$bare_pid

# The disk holding the store: its busy milliseconds so far (/proc/diskstats, field 13).
dev=$(basename "$(df --output=source "$work/glance-rs" | tail -1)")
disk_ms() { awk -v d="$dev" '$3 == d { print $13 }' /proc/diskstats; }

# measure WHAT COMMAND...: one transfer of the stored file, cold (the page cache dropped just
# before) unless WARM is set; prints its line: for a server, its process's CPU (all threads: one
# connection's sends are serial, whichever thread makes them) as a share of one core, then each
# thread's.
measure() {
  local what=$1 t0 t1 d0 d1 m0 m1 c0 c1 el; shift
  if [ -z "${WARM:-}" ]; then drop_caches; else cat "$stored" >/dev/null; fi
  local pid=${PID[$what]:-}
  [ -z "$pid" ] || { threads "$pid" >"$work/threads0"; c0=$(process_ticks "$pid"); }
  d0=$(disk_ms); m0=$(head -1 /proc/stat)
  t0=$(now); /usr/bin/time -f "%U %S" -o "$work/cmd.cpu" "$@" >/dev/null; t1=$(now)
  d1=$(disk_ms); m1=$(head -1 /proc/stat)
  el=$(secs "$t0" "$t1")
  printf '%-10s %5s MB/s  disk busy %3s%%  machine idle %3s%%  %s %.2f s CPU' "$what" \
    "$(mbps $gib "$el")" "$(awk -v a="$d0" -v b="$d1" -v e="$el" 'BEGIN { printf "%.0f", (b - a) / 10 / e }')" \
    "$(idle_share "$m0" "$m1")" "$(basename "$1")" "$(awk '{ print $1 + $2 }' "$work/cmd.cpu")"
  if [ -n "$pid" ]; then
    c1=$(process_ticks "$pid")
    printf '  server %.2f s CPU = %s%% of a core\n' "$(awk -v t=$((c1 - c0)) -v hz="$hz" 'BEGIN { print t / hz }')" \
      "$(core_share $((c1 - c0)) "$el")"
    threads "$pid" >"$work/threads1"
    [ "$what" = bare ] || thread_cpu "$hz" "$el" "$work/threads0" "$work/threads1"
  else
    echo
  fi
  echo "${WARM:+warm-}$what $(mbps $gib "$el")" >>"$work/rates"
}

rm -f "$work/rates"
echo "cold transfers of 1 GiB ($rounds rounds; disk $dev):"
for _ in $(seq 1 "$rounds"); do
  measure cat cat "$stored"
  measure bare curl -sf "$bare_url" -o /dev/null
  for n in "${names[@]}"; do measure "$n" curl -sf "${URL[$n]}" -o /dev/null; done
done >"$work/report"
# The HTTP path's own ceiling on this machine: the same servers with the file in the page cache.
echo "warm (the file in the page cache), 3 rounds:" >>"$work/report"
for _ in 1 2 3; do
  WARM=1 measure bare curl -sf "$bare_url" -o /dev/null
  for n in "${names[@]}"; do WARM=1 measure "$n" curl -sf "${URL[$n]}" -o /dev/null; done
done >>"$work/report"
cat "$work/report"
awk '{ if ($2 > best[$1]) best[$1] = $2 } END {
  printf "best: cat %d, bare sendfile %d, glance-rs %d MB/s: glance-rs %.2f x cat, %.2f x bare sendfile\n",
    best["cat"], best["bare"], best["glance-rs"], best["glance-rs"] / best["cat"], best["glance-rs"] / best["bare"]
  if ("baseline" in best) printf "baseline (BASE_BIN) best %d MB/s\n", best["baseline"]
  printf "warm: bare sendfile %d, glance-rs %d MB/s (cold cat %.2f x the warm bare server)\n",
    best["warm-bare"], best["warm-glance-rs"], best["cat"] / best["warm-bare"] }' "$work/rates"
# Medians too: the disk moves between ~0.6 and ~3 GB/s from one read to the next.
sort -k1,1 -k2n "$work/rates" | awk '{ v[$1, ++c[$1]] = $2 } END {
  for (k in c) printf "median %s %d MB/s\n", k, v[k, int((c[k] + 1) / 2)] }' | sort
