#!/usr/bin/env bash
# A private MariaDB server for tests: no systemd, loopback only, its own data directory.
#
#   scripts/mariadb.sh start DIR PORT   initialize DIR if new, start mariadbd, wait until it answers,
#                                       create the user glance/glance with all privileges
#   scripts/mariadb.sh stop DIR         stop the server whose pid is in DIR/mariadbd.pid
#
# Prints the URL to use: mysql://glance:glance@127.0.0.1:PORT
set -euo pipefail

cmd=${1:?start|stop}
dir=$(realpath -m "${2:?data directory}")
mariadbd=$(command -v mariadbd || echo /usr/sbin/mariadbd)

stop() {
  local pidfile="$dir/mariadbd.pid"
  [ -f "$pidfile" ] || return 0
  local pid
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

case "$cmd" in
  start)
    port=${3:?port}
    if [ ! -x "$mariadbd" ]; then
      echo "mariadbd not found: install Debian's mariadb-server (scripts/install-deps does)" >&2
      exit 1
    fi
    mkdir -p "$dir"
    if [ -f "$dir/mariadbd.pid" ] && kill -0 "$(cat "$dir/mariadbd.pid")" 2>/dev/null; then
      echo "mysql://glance:glance@127.0.0.1:$port"
      exit 0
    fi
    if [ ! -d "$dir/data/mysql" ]; then
      mariadb-install-db --no-defaults --datadir="$dir/data" --user="$(id -un)" \
        --auth-root-authentication-method=socket --skip-test-db >"$dir/install.log" 2>&1 || {
        cat "$dir/install.log" >&2; exit 1; }
    fi
    # Durability is not what tests measure: skip fsync-heavy settings to keep them fast.
    "$mariadbd" --no-defaults --datadir="$dir/data" --socket="$dir/mariadbd.sock" \
      --port="$port" --bind-address=127.0.0.1 --pid-file="$dir/mariadbd.pid" --user="$(id -un)" \
      --log-error="$dir/error.log" --skip-log-bin --innodb-buffer-pool-size=256M \
      --innodb-flush-log-at-trx-commit=2 --max-connections=500 \
      --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci >/dev/null 2>&1 &
    for _ in $(seq 1 300); do
      if mariadb-admin --no-defaults --socket="$dir/mariadbd.sock" -uroot ping >/dev/null 2>&1; then
        break
      fi
      sleep 0.1
    done
    mariadb-admin --no-defaults --socket="$dir/mariadbd.sock" -uroot ping >/dev/null 2>&1 || {
      echo "MariaDB did not start; see $dir/error.log" >&2; tail -20 "$dir/error.log" >&2; exit 1; }
    mariadb --no-defaults --socket="$dir/mariadbd.sock" -uroot -e "
      CREATE USER IF NOT EXISTS 'glance'@'127.0.0.1' IDENTIFIED BY 'glance';
      CREATE USER IF NOT EXISTS 'glance'@'localhost' IDENTIFIED BY 'glance';
      GRANT ALL PRIVILEGES ON *.* TO 'glance'@'127.0.0.1' WITH GRANT OPTION;
      GRANT ALL PRIVILEGES ON *.* TO 'glance'@'localhost' WITH GRANT OPTION;"
    echo "mysql://glance:glance@127.0.0.1:$port"
    ;;
  stop) stop ;;
  *) echo "usage: $0 start DIR PORT | stop DIR" >&2; exit 2 ;;
esac
