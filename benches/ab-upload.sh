#!/usr/bin/env bash
# A/B upload benchmark: two builds of the server side by side, 1 GiB uploads alternating between
# them, so both see the same moments of this VM's drifting speed (±10-15% from one minute to the
# next, which hides a 5% change between two runs of bench.sh).
#
#   benches/ab-upload.sh BIN_A BIN_B [ROUNDS]      (prints MB/s pairs and the mean ratio B/A)
#
# e.g. build the old revision with `git worktree add /tmp/old REV && cd /tmp/old && cargo build
# --release`, then compare /tmp/old/target/release/glance-rs with target/release/glance-rs.
# A_CONF / B_CONF add a [glance_store] line to one side's configuration, to compare a setting
# within one build: B_CONF='filesystem_store_direct_io = false' benches/ab-upload.sh BIN BIN
set -euo pipefail
[ $# -ge 2 ] || { sed -n 2,11p "$0"; exit 2; }
bin_a=$1 bin_b=$2 rounds=${3:-8}
work=$(mktemp -d /tmp/glance-ab.XXXXXX)
. "$(dirname "$0")/lib.sh"
trap 'stop_servers; rm -rf "$work"' EXIT
head -c $((1 << 30)) /dev/urandom >"$work/img"

upload() { # URL -> "MB/s CPU-seconds" (the whole machine's: server, curl, kernel)
  local url=$1 id t0 t1 c0 c1
  id=$(create_image "$url" ab)
  c0=$(machine_busy); t0=$(date +%s.%N)
  curl -sf -X PUT "$url/v2/images/$id/file" -H 'Content-Type: application/octet-stream' \
    -T "$work/img" -o /dev/null
  t1=$(date +%s.%N); c1=$(machine_busy)
  curl -sf -X DELETE "$url/v2/images/$id"
  awk -v a="$t0" -v b="$t1" -v c=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" \
    'BEGIN { printf "%.0f %.2f", 2^30 / (b - a) / 1e6, c / hz }'
}

start_server "$work/a" "$bin_a" ${A_CONF:+"$A_CONF"}; a=$SERVER_URL
start_server "$work/b" "$bin_b" ${B_CONF:+"$B_CONF"}; b=$SERVER_URL
upload "$a" >/dev/null; upload "$b" >/dev/null # warm both
echo "A: MB/s CPU-s  B: MB/s CPU-s"
for _ in $(seq 1 "$rounds"); do echo "$(upload "$a") $(upload "$b")"; done |
  awk '{ print; a += $1; b += $3; r += $3 / $1; ca += $2; cb += $4; n++ }
       END { printf "mean A %.0f MB/s %.2f CPU-s, B %.0f MB/s %.2f CPU-s; B/A rate %.3f, CPU %.3f\n",
             a / n, ca / n, b / n, cb / n, r / n, cb / ca }'
