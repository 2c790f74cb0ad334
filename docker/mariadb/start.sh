#!/usr/bin/env bash
# Starts MariaDB on 127.0.0.1:$MYSQL_PORT, creates the glance database, then stays in the
# foreground until mariadbd ends (SIGTERM stops it cleanly).
set -euo pipefail
dir=/var/lib/glance-db
mariadb.sh start "$dir" "${MYSQL_PORT:-3306}"
mariadb --no-defaults --socket="$dir/mariadbd.sock" -uroot \
  -e "CREATE DATABASE IF NOT EXISTS glance CHARACTER SET utf8mb4"
touch "$dir/ready"
trap 'rm -f "$dir/ready"; mariadb.sh stop "$dir"; exit 0' TERM INT
pid=$(cat "$dir/mariadbd.pid")
while kill -0 "$pid" 2>/dev/null; do sleep 1; done
