#!/usr/bin/env bash
# A private RabbitMQ broker on 127.0.0.1 for the notification tests: Debian's rabbitmq-server
# (installed if missing), its own node name, ports, data and cookie under DIR, no systemd;
# the guest account (guest/guest) reachable from loopback.
#
#   scripts/rabbitmq.sh start DIR [PORT [TLS_PORT]]
#                                          start it (PORT 5672+); prints
#                                          TRANSPORT_URL=rabbit://guest:guest@127.0.0.1:PORT//
#                                          With TLS_PORT, also a TLS listener there, its
#                                          certificate (for the name localhost only) from a CA
#                                          made in DIR/tls; prints TLS_URL=rabbit://...@localhost:
#                                          TLS_PORT// and TLS_CA=DIR/tls/ca.pem
#   scripts/rabbitmq.sh stop DIR           stop the broker whose pid is in DIR/rabbit.pid
set -euo pipefail

cmd=${1:?start|stop}
dir=$(realpath -m "${2:?broker directory}")
port=${3:-5673}
tls_port=${4:-}
say() { echo "rabbitmq.sh: $*" >&2; }
log_tail() { tail -n 20 "$dir"/log/*.log "$dir/log/server.out" >&2 2>/dev/null || true; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
bin=/usr/lib/rabbitmq/bin

env_for() {
  export HOME=$dir RABBITMQ_HOME=/usr/lib/rabbitmq
  export RABBITMQ_NODENAME=glance_test_$port@localhost RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
  export RABBITMQ_NODE_PORT=$port RABBITMQ_DIST_PORT=$((port + 4000))
  export RABBITMQ_MNESIA_BASE=$dir/mnesia RABBITMQ_LOG_BASE=$dir/log
  export RABBITMQ_PID_FILE=$dir/rabbit.pid RABBITMQ_CONFIG_FILE=$dir/rabbitmq
  export RABBITMQ_ENABLED_PLUGINS_FILE=$dir/enabled_plugins ERL_EPMD_ADDRESS=127.0.0.1
  # A broker that fails to start writes its crash dump here, not into the caller's directory.
  export ERL_CRASH_DUMP=$dir/erl_crash.dump
}

case "$cmd" in
  start)
    # openssl makes the TLS listener's certificates.
    if [ ! -x "$bin/rabbitmq-server" ] || ! command -v openssl >/dev/null; then
      say "installing rabbitmq-server openssl"
      as_root apt-get update -qq
      DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 as_root apt-get install -y -qq rabbitmq-server openssl >/dev/null
    fi
    mkdir -p "$dir/log" "$dir/mnesia"
    env_for
    [ -f "$dir/.erlang.cookie" ] || { head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/.erlang.cookie"; chmod 400 "$dir/.erlang.cookie"; }
    printf 'listeners.tcp.default = 127.0.0.1:%s\nloopback_users.guest = true\n' "$port" >"$dir/rabbitmq.conf"
    if [ -n "$tls_port" ]; then
      t=$dir/tls; mkdir -p "$t"
      if [ ! -s "$t/server.pem" ]; then
        openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj /CN=glance-test-ca \
          -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
          -keyout "$t/ca.key" -out "$t/ca.pem" 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout "$t/server.key" \
          -out "$t/server.csr" 2>/dev/null
        printf 'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$t/ext"
        openssl x509 -req -in "$t/server.csr" -CA "$t/ca.pem" -CAkey "$t/ca.key" -CAcreateserial \
          -days 7 -extfile "$t/ext" -out "$t/server.pem" 2>/dev/null
      fi
      printf '%s\n' "listeners.ssl.default = 127.0.0.1:$tls_port" "ssl_options.cacertfile = $t/ca.pem" \
        "ssl_options.certfile = $t/server.pem" "ssl_options.keyfile = $t/server.key" \
        "ssl_options.verify = verify_none" "ssl_options.fail_if_no_peer_cert = false" >>"$dir/rabbitmq.conf"
    fi
    echo '[].' >"$dir/enabled_plugins"
    if ! { [ -s "$dir/rabbit.pid" ] && kill -0 "$(cat "$dir/rabbit.pid")" 2>/dev/null; }; then
      nohup "$bin/rabbitmq-server" >>"$dir/log/server.out" 2>&1 &
      echo $! >"$dir/launcher.pid"
    fi
    for _ in $(seq 1 120); do
      if timeout 10 "$bin/rabbitmq-diagnostics" -q check_port_connectivity >/dev/null 2>&1; then
        echo "TRANSPORT_URL=rabbit://guest:guest@127.0.0.1:$port//"
        if [ -n "$tls_port" ]; then
          echo "TLS_URL=rabbit://guest:guest@localhost:$tls_port//"
          echo "TLS_CA=$dir/tls/ca.pem"
        fi
        exit 0
      fi
      # A broker that died (a port taken, a bad config) will not come up: say why now.
      if [ -s "$dir/launcher.pid" ] && ! kill -0 "$(cat "$dir/launcher.pid")" 2>/dev/null; then
        say "the broker exited while starting; the end of its logs:"
        log_tail
        exit 1
      fi
      sleep 0.5
    done
    say "the broker did not start; the end of its logs:"
    log_tail
    exit 1
    ;;
  stop)
    env_for
    timeout 30 "$bin/rabbitmqctl" -q stop >/dev/null 2>&1 || true
    for f in rabbit.pid launcher.pid; do
      if [ -s "$dir/$f" ]; then kill "$(cat "$dir/$f")" 2>/dev/null || true; rm -f "$dir/$f"; fi
    done
    # Erlang's port mapper, started with the first broker: it refuses to stop while another
    # broker (another test's) is registered with it.
    epmd=$(command -v epmd || ls /usr/lib/erlang/erts-*/bin/epmd 2>/dev/null | head -1 || true)
    [ -z "$epmd" ] || "$epmd" -kill >/dev/null 2>&1 || true
    ;;
  *) echo "usage: $0 start DIR [PORT [TLS_PORT]] | stop DIR" >&2; exit 2 ;;
esac
