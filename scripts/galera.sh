#!/usr/bin/env bash
# A private three-node MariaDB Galera cluster on loopback for tests (Debian's galera-4): no
# systemd, each node its own data directory under DIR/nN, rsync state transfers.
#
#   scripts/galera.sh start DIR BASE    bootstrap node 1, join nodes 2 and 3, create the users
#                                       glance/glance and haproxy (for haproxy's mysql-check);
#                                       node N listens on BASE+10N (clients), BASE+10N+1
#                                       (replication), +2 (IST), +3 (SST)
#   scripts/galera.sh stop DIR [N]      stop every node (or node N) cleanly, by pid
#   scripts/galera.sh kill DIR N        kill -9 node N
#   scripts/galera.sh rejoin DIR N      start node N again, joining the others; waits until synced
#   scripts/galera.sh bootstrap DIR     after every node stopped: node 1 starts a new cluster
#                                       from its state, then 2 and 3 join
#
# Prints the client ports of the three nodes, one per line.
set -euo pipefail

cmd=${1:?start|stop|kill|rejoin|bootstrap}
dir=$(realpath -m "${2:?data directory}")
mariadbd=$(command -v mariadbd || echo /usr/sbin/mariadbd)
provider=/usr/lib/galera/libgalera_smm.so

base() { cat "$dir/base"; }
port() { echo $(($(base) + 10 * $1)); }
# Nodes run as Debian's mysql user when started as root: rsync's daemon (the joiner's end of a
# state transfer) would otherwise drop to nobody and fail to write the data directory.
run_as() { if [ "$(id -u)" = 0 ] && id mysql >/dev/null 2>&1; then echo mysql; else id -un; fi; }

sql() { mariadb --no-defaults --socket="$dir/n$1/sock" -uroot -N -e "$2"; }

state() { sql "$1" "SHOW STATUS LIKE 'wsrep_local_state_comment'" 2>/dev/null | awk '{print $2}'; }

# Starts node N's mariadbd in the background ($! is its pid).
launch_node() { # N, new-cluster flag
  local n=$1 new=${2:-} p g d
  p=$(port "$n"); g=$((p + 1)); d="$dir/n$n"
  mkdir -p "$d"
  if [ ! -d "$d/data/mysql" ]; then
    mariadb-install-db --no-defaults --datadir="$d/data" --user="$(run_as)" \
      --auth-root-authentication-method=socket --skip-test-db >"$d/install.log" 2>&1 || {
      cat "$d/install.log" >&2; exit 1; }
  fi
  chown -R "$(run_as)" "$d"
  # rsync's state transfer blocks its donor while it copies: the writer (node 1, as haproxy
  # sends every client there) gives one only when no other node can.
  local donors
  case $n in 1) donors=n2,n3, ;; 2) donors=n3,n1 ;; 3) donors=n2,n1 ;; esac
  local peers
  peers="127.0.0.1:$(($(port 1) + 1)),127.0.0.1:$(($(port 2) + 1)),127.0.0.1:$(($(port 3) + 1))"
  "$mariadbd" --no-defaults --datadir="$d/data" --socket="$d/sock" --port="$p" \
    --bind-address=127.0.0.1 --pid-file="$d/pid" --user="$(run_as)" --log-error="$d/error.log" \
    --innodb-buffer-pool-size=64M --innodb-flush-log-at-trx-commit=2 --max-connections=300 \
    --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci \
    --binlog-format=ROW --default-storage-engine=InnoDB --innodb-autoinc-lock-mode=2 \
    --wsrep-on=ON --wsrep-provider="$provider" --wsrep-cluster-name=glance \
    --wsrep-cluster-address="gcomm://$peers" --wsrep-node-name="n$n" \
    --wsrep-node-address="127.0.0.1:$g" --wsrep-sst-method=rsync \
    --wsrep-sst-receive-address="127.0.0.1:$((p + 3))" --wsrep-sst-donor="$donors" \
    --wsrep-provider-options="gmcast.listen_addr=tcp://127.0.0.1:$g;ist.recv_addr=127.0.0.1:$((p + 2));base_port=$g;gcache.size=64M" \
    $new >/dev/null 2>&1 &
}

status() { sql "$1" "SHOW STATUS LIKE 'wsrep_cluster_status'" 2>/dev/null | awk '{print $2}'; }
size() { sql "$1" "SHOW STATUS LIKE 'wsrep_cluster_size'" 2>/dev/null | awk '{print $2}'; }

# After node N crashed while joining: waits (at most 20 s) until the nodes still running see a
# primary component of just themselves. A joiner's crash can leave the others without a
# majority (node 1 alone after node 2's), non-primary: the survivors then form one again.
regain_primary() { # N
  local m live=()
  for m in 1 2 3; do [ "$m" = "$1" ] || [ -z "$(state "$m")" ] || live+=("$m"); done
  [ ${#live[@]} -gt 0 ] || return 0
  for _ in $(seq 1 200); do
    case "$(status "${live[0]}")" in
      Primary) [ "$(size "${live[0]}")" = ${#live[@]} ] && return 0 ;;
      non-Primary) sql "${live[0]}" "SET GLOBAL wsrep_provider_options='pc.bootstrap=YES'" || true ;;
    esac
    sleep 0.1
  done
}

# Starts node N (with the new-cluster flag, N bootstraps) and waits until it is synced. Debian's
# mariadbd has been seen to crash (SIGSEGV) now and then while it joins: a node whose process
# exits before it syncs is started again, up to three times.
start_node() { # N, new-cluster flag
  local n=$1 pid attempt
  for attempt in 1 2 3; do
    launch_node "$@"
    pid=$!
    for _ in $(seq 1 600); do
      [ "$(state "$n")" = Synced ] && return 0
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && break # alive but not synced in 60 s: starting again won't help
    echo "Galera node $n: mariadbd exited before it synced (attempt $attempt of 3):" >&2
    grep -E 'got signal|\[ERROR\]' "$dir/n$n/error.log" | tail -3 >&2 || true
    regain_primary "$n"
    # A crash can leave node 1's state marked unsafe to bootstrap from; it is the only node.
    [ -z "${2:-}" ] || [ ! -f "$dir/n$n/data/grastate.dat" ] ||
      sed -i 's/^safe_to_bootstrap: 0/safe_to_bootstrap: 1/' "$dir/n$n/data/grastate.dat"
  done
  echo "Galera node $n did not sync; see $dir/n$n/error.log" >&2
  tail -30 "$dir/n$n/error.log" >&2
  exit 1
}

pid_of() { cat "$dir/n$1/pid" 2>/dev/null || true; }

stop_node() {
  local pid; pid=$(pid_of "$1")
  [ -n "$pid" ] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/n$1/pid"
}

ports() { for n in 1 2 3; do port "$n"; done; }

case "$cmd" in
  start)
    [ -f "$provider" ] || { echo "$provider not found: install Debian's galera-4 (scripts/install-deps does)" >&2; exit 1; }
    mkdir -p "$dir"
    # The nodes' user must reach their directories (a test's temporary directory is 0700).
    chmod 0755 "$dir"
    echo "${3:?base port}" >"$dir/base"
    start_node 1 --wsrep-new-cluster
    sql 1 "CREATE USER IF NOT EXISTS 'glance'@'127.0.0.1' IDENTIFIED BY 'glance';
      CREATE USER IF NOT EXISTS 'glance'@'localhost' IDENTIFIED BY 'glance';
      GRANT ALL PRIVILEGES ON *.* TO 'glance'@'127.0.0.1' WITH GRANT OPTION;
      GRANT ALL PRIVILEGES ON *.* TO 'glance'@'localhost' WITH GRANT OPTION;
      CREATE USER IF NOT EXISTS 'haproxy'@'127.0.0.1';"
    start_node 2
    start_node 3
    ports
    ;;
  stop)
    if [ -n "${3:-}" ]; then stop_node "$3"; else for n in 3 2 1; do stop_node "$n"; done; fi
    ;;
  kill)
    pid=$(pid_of "${3:?node}")
    [ -z "$pid" ] || kill -9 "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    rm -f "$dir/n$3/pid"
    ;;
  rejoin)
    start_node "${3:?node}"
    ;;
  bootstrap)
    # The last node to stop cleanly is safe to bootstrap from: node 1, as `stop` stops it last.
    sed -i 's/^safe_to_bootstrap: 0/safe_to_bootstrap: 1/' "$dir/n1/data/grastate.dat"
    start_node 1 --wsrep-new-cluster
    start_node 2
    start_node 3
    ;;
  *) echo "usage: $0 start DIR BASE | stop DIR [N] | kill DIR N | rejoin DIR N | bootstrap DIR" >&2; exit 2 ;;
esac
