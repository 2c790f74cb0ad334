#!/usr/bin/env bash
# Bootstraps (once) and starts Keystone on 127.0.0.1:$KEYSTONE_PORT, then stays in the
# foreground while uWSGI runs (SIGTERM stops it).
set -euo pipefail
dir=/var/lib/keystone
export GLANCE_CATALOG_PORT=${GLANCE_PORT:-9292}
/opt/keystone/keystone.sh start "$dir" "${KEYSTONE_PORT:-5000}"
trap '/opt/keystone/keystone.sh stop "$dir"; exit 0' TERM INT
while kill -0 "$(cat "$dir/uwsgi.pid")" 2>/dev/null; do sleep 1; done
