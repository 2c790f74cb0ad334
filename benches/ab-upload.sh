#!/usr/bin/env bash
# A/B upload benchmark: two builds of the server side by side, 1 GiB uploads alternating between
# them, so both see the same moments of this VM's drifting speed (±10-15% from one minute to the
# next, which hides a 5% change between two runs of bench.sh).
#
#   benches/ab-upload.sh BIN_A BIN_B [ROUNDS]      (prints MB/s pairs and the mean ratio B/A)
#
# e.g. build the old revision with `git worktree add /tmp/old REV && cd /tmp/old && cargo build
# --release`, then compare /tmp/old/target/release/glance-rs with target/release/glance-rs.
set -euo pipefail
[ $# -ge 2 ] || { sed -n 2,9p "$0"; exit 2; }
bin_a=$1 bin_b=$2 rounds=${3:-8}
work=$(mktemp -d /tmp/glance-ab.XXXXXX)
. "$(dirname "$0")/lib.sh"
trap 'stop_servers; rm -rf "$work"' EXIT
head -c $((1 << 30)) /dev/urandom >"$work/img"

upload() { # URL -> MB/s
  local url=$1 id t0 t1
  id=$(create_image "$url" ab)
  t0=$(date +%s.%N)
  curl -sf -X PUT "$url/v2/images/$id/file" -H 'Content-Type: application/octet-stream' \
    -T "$work/img" -o /dev/null
  t1=$(date +%s.%N)
  curl -sf -X DELETE "$url/v2/images/$id"
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", 2^30 / (b - a) / 1e6 }'
}

start_server "$work/a" "$bin_a"; a=$SERVER_URL
start_server "$work/b" "$bin_b"; b=$SERVER_URL
upload "$a" >/dev/null; upload "$b" >/dev/null # warm both
echo "MB/s A  B"
for _ in $(seq 1 "$rounds"); do echo "$(upload "$a") $(upload "$b")"; done |
  awk '{ print; a += $1; b += $2; r += $2 / $1; n++ }
       END { printf "mean A %.0f MB/s, B %.0f MB/s, B/A %.3f\n", a / n, b / n, r / n }'
