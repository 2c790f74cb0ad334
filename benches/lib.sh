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

# create_image URL NAME: a raw/bare image; prints its id.
create_image() {
  curl -sf -X POST "$1/v2/images" -H 'Content-Type: application/json' \
    -d "{\"name\": \"$2\", \"disk_format\": \"raw\", \"container_format\": \"bare\"}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'
}
