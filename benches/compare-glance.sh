#!/usr/bin/env bash
# glance-rs next to the real Glance on this machine, in one run, the same requests to both:
# 1 GiB upload and download with curl, creating image records, GET /v2/images latency with
# 1,000 images, server memory. Glance 33.0.0 from PyPI under uWSGI (2 processes, as many as
# cores), no auth (Glance's pipeline without authtoken, the rules used opened to everyone),
# SQLite, file store; glance-rs with the same.
#
#   benches/compare-glance.sh [WORKDIR]   (scripts/glance.sh installs Glance when
#                                          missing, ~70 s; needs ~3 GiB free)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
release_build_in glance-compare "${1:-}"

# The real Glance (scripts/glance.sh installs it when missing), on a free loopback port.
g=$work/glance; rm -rf "$g"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
stop_glance() { scripts/glance.sh stop "$g"; }
trap 'stop_glance; stop_servers; rm -rf "$g" "$work/rs"' EXIT
glance_url=$(scripts/glance.sh start "$g" "$port" | sed -n 's/^GLANCE_URL=//p')
glance_pid=$(cat "$g/uwsgi.pid")

img=$work/img-1g.bin
[ -f "$img" ] || head -c $((1 << 30)) /dev/urandom >"$img"
cat "$img" >/dev/null
fetch() { curl -sf "$1" -o /dev/null; }
upload() { curl -sf -X PUT "$1/v2/images/$2/file" -H 'Content-Type: application/octet-stream' -T "$img" -o /dev/null; }
# rss PID...: resident MiB of these processes and their children (uWSGI's workers).
rss() {
  local pids; pids=$(for p in "$@"; do echo "$p"; pgrep -P "$p" || true; done)
  # shellcheck disable=SC2086
  ps -o rss= -p $(echo $pids | tr ' ' ,) | awk '{ s += $1 } END { printf "%.0f", s / 1024 }'
}

# measure NAME URL PID: one line per figure, "NAME<tab>figure<tab>value".
measure() {
  local name=$1 url=$2 pid=$3 id="" best=0 r t0 t1 c0 c1 cpu
  for _ in 1 2 3; do
    # One image stored at a time.
    [ -z "$id" ] || curl -sf -X DELETE "$url/v2/images/$id"
    id=$(create_image "$url" bench)
    c0=$(machine_busy); t0=$(now); upload "$url" "$id"; t1=$(now); c1=$(machine_busy)
    r=$(mbps $((1 << 30)) "$(secs "$t0" "$t1")")
    if [ "$r" -gt "$best" ]; then
      best=$r
      cpu=$(awk -v c=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", c / hz }')
    fi
    echo "   $name upload: $r MB/s" >&2
  done
  printf '%s\t%s\t%s\n' "$name" "upload 1 GiB, MB/s (best of 3)" "$best" \
    "$name" "  CPU-seconds it cost the machine" "$cpu" \
    "$name" "download 1 GiB, MB/s (best of 3)" "$(best_of 3 $((1 << 30)) fetch "$url/v2/images/$id/file")" \
    "$name" "server RSS after these, MiB" "$(rss "$pid")" \
    "$name" "create an image record, ms (mean of 1,000)" "$(fill_images "$url" 1000)"
  list_latency "$url" | awk -v n="$name" '{ split($0, a, ": p50 "); split(a[2], b, " ")
    printf "%s\tGET /v2/images %s, p50 ms\t%s\n", n, a[1], b[1] }'
}

read_all() { cat "$1" >/dev/null; }
echo "== this machine: openssl sha512 (one core) $(openssl speed -bytes 1048576 -seconds 2 sha512 2>/dev/null | openssl_mbps sha512) MB/s, cat of the image $(best_of 3 $((1 << 30)) read_all "$img") MB/s"
# One server at a time: the other one stopped, so that neither competes for the two cores.
measure glance "$glance_url" "$glance_pid" >"$work/figures"
stop_glance
rm -rf "$work/rs"; start_server "$work/rs" "$bin"
measure glance-rs "$SERVER_URL" "$SERVER_PID" >>"$work/figures"
echo "== Glance 33.0.0 (uWSGI, 2 processes) and glance-rs, same machine, same requests"
awk -F'\t' '{ v[$2, $1] = $3; if (!seen[$2]++) order[++n] = $2 }
     END {
       printf "%-52s %9s %9s %7s\n", "", "Glance", "glance-rs", "better"
       for (i = 1; i <= n; i++) {
         k = order[i]; a = v[k, "glance"]; b = v[k, "glance-rs"]
         # How many times better glance-rs is: higher rates, lower times and memory.
         better = (k ~ /MB\/s/) ? b / a : a / b
         printf "%-52s %9s %9s %6.1fx\n", k, a, b, better
       }
     }' "$work/figures"
