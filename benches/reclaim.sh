#!/usr/bin/env bash
# Time from a node's death to a clean image: two glance-rs nodes share a SQLite database and a
# file store directory, with the default lease ([task] lease_seconds = 30, or LEASE); a 1 GiB
# upload goes to node A; when half of it is written, A is killed (kill -9) and the clock runs
# until node B shows the image back in `queued` with no byte of it left in the store. N times
# (default 10); prints each time, the median and the worst.
#
#   benches/reclaim.sh [WORKDIR]     (N=10 LEASE=30)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
release_build_in glance-reclaim "${1:-}"
n=${N:-10}; lease=${LEASE:-30}
img=$work/img-1g.bin
[ -f "$img" ] || head -c $((1 << 30)) /dev/urandom >"$img"
trap 'stop_servers; kill "$up" 2>/dev/null || true' EXIT
up=""
shared=$work/shared; rm -rf "$shared"; mkdir -p "$shared"
node() { # DIR: a node on the shared database and store
  start_server "$1" "$bin" "filesystem_store_datadir = $shared/images" \
    "[database]" "connection = sqlite:///$shared/glance.sqlite" "[task]" "lease_seconds = $lease"
}
node "$work/b"; b=$SERVER_URL
status() { curl -sf "$b/v2/images/$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])'; }
times=()
for i in $(seq 1 "$n"); do
  rm -rf "$work/a"; node "$work/a"; a=$SERVER_URL; a_pid=$SERVER_PID
  id=$(create_image "$a" "reclaim-$i")
  curl -s -X PUT "$a/v2/images/$id/file" -H 'Content-Type: application/octet-stream' \
    --limit-rate 100M -T "$img" -o /dev/null & up=$!
  # Half of it written: the temporary file holds 512 MiB.
  for _ in $(seq 1 600); do
    sz=$(find "$shared/images" -name ".$id.*" -printf '%s\n' 2>/dev/null | head -1)
    [ "${sz:-0}" -ge $((512 << 20)) ] && break
    sleep 0.05
  done
  kill -9 "$a_pid"; t0=$(now)
  wait "$up" 2>/dev/null || true; up=""
  for _ in $(seq 1 3000); do
    [ "$(status "$id")" = queued ] && [ -z "$(ls -A "$shared/images" | grep -F "$id" || true)" ] && break
    sleep 0.05
  done
  t1=$(now); t=$(secs "$t0" "$t1")
  times+=("$t")
  echo "kill $i: clean after $t s"
  curl -sf -X DELETE "$b/v2/images/$id"
done
printf '%s\n' "${times[@]}" | sort -n | awk -v lease="$lease" '{ t[NR] = $1 } END {
  printf "%d kills, lease %d s: median %.1f s, worst %.1f s, best %.1f s\n", NR, lease,
    (NR % 2 ? t[(NR + 1) / 2] : (t[NR / 2] + t[NR / 2 + 1]) / 2), t[NR], t[1] }'
