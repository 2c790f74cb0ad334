# Sourced by the bench scripts.

SERVER_PIDS=()

# start_server DIR BIN [LINE...]: writes DIR/glance-api.conf (loopback, any free port, SQLite
# and the file store in DIR, then LINE... as given, inside [glance_store] unless they open
# another section), starts BIN with it and waits until it listens. Sets SERVER_URL and
# SERVER_PID (call it directly, not in $(...): the server must be this shell's child).
start_server() {
  local d=$1 bin=$2; shift 2
  mkdir -p "$d"
  {
    printf '[DEFAULT]\nbind_host = 127.0.0.1\nbind_port = 0\n'
    printf '[database]\nconnection = sqlite:///%s/glance.sqlite\n' "$d"
    printf '[glance_store]\nfilesystem_store_datadir = %s/images\n' "$d"
    [ $# -eq 0 ] || printf '%s\n' "$@"
  } >"$d/glance-api.conf"
  "$bin" --config-file "$d/glance-api.conf" >"$d/out" 2>"$d/log" &
  SERVER_PID=$!
  SERVER_PIDS+=("$SERVER_PID")
  for _ in $(seq 1 100); do grep -q "listening on" "$d/out" 2>/dev/null && break; sleep 0.1; done
  SERVER_URL="http://$(sed -n 's/^listening on //p' "$d/out")"
}

# Stops (by pid) every server start_server started; for an EXIT trap.
stop_servers() {
  [ ${#SERVER_PIDS[@]} -eq 0 ] && return
  kill "${SERVER_PIDS[@]}" 2>/dev/null || true
  wait "${SERVER_PIDS[@]}" 2>/dev/null || true
}

# mbps BYTES SECONDS; now (a timestamp); secs T0 T1 (seconds between two of them).
mbps() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.0f", b / s / 1e6 }'; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

# machine_busy: CPU ticks (user, system, interrupts) all cores have spent since boot.
machine_busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat; }

# openssl_mbps ALGO: the MB/s of ALGO in `openssl speed -bytes N` output on stdin.
openssl_mbps() {
  awk -v a="$1" '$1 == a { v = $NF; sub("k", "", v); printf "%.0f", v * 1000 / 1e6 }'
}

# ratio A B: A / B to two decimals.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

# create_image URL NAME: a raw/bare image; prints its id.
create_image() {
  curl -sf -X POST "$1/v2/images" -H 'Content-Type: application/json' \
    -d "{\"name\": \"$2\", \"disk_format\": \"raw\", \"container_format\": \"bare\"}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'
}
