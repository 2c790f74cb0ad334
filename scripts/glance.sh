#!/usr/bin/env bash
# The real Glance, to compare glance-rs with: glance 33.0.0 from PyPI served by uWSGI on
# 127.0.0.1, SQLite, the file store, no authentication (Glance's pipeline without authtoken:
# every request is an admin context without roles, so the policy rules such requests need are
# opened to everyone); GLANCE_STORES=multi at set-up gives it two file backends.
# With GLANCE_AUTH_URL (a Keystone's v3 URL) at set-up it validates tokens there instead, with
# Glance's default policies, or with GLANCE_POLICY_YAML those rules in its policy file.
# GLANCE_EXTRA_CONF at set-up is appended to its glance-api.conf (e.g. a property protection
# file). GLANCE_PROCESSES (2) sets uWSGI's worker count. tests/parity.rs compares answers with it (scripts/compare-responses.py).
#
#   scripts/glance.sh install            install into .test-env/glance/venv (or $GLANCE_VENV)
#                                        if missing
#   scripts/glance.sh start DIR [PORT]   install into .test-env/glance/venv if missing, set up
#                                        DIR if new, start uWSGI (2 processes), wait until it
#                                        answers; prints GLANCE_URL=http://127.0.0.1:PORT
#   scripts/glance.sh stop DIR           stop the uWSGI whose pid is in DIR/uwsgi.pid
set -euo pipefail

cmd=${1:?install|start|stop}
# `install` names no directory.
if [ "$cmd" = install ]; then dir=; else dir=$(realpath -m "${2:?glance directory}"); fi
port=${3:-9393}
venv=${GLANCE_VENV:-$(realpath -m "$(dirname "$0")/../.test-env/glance/venv")}
packages="glance==33.0.0 uWSGI==2.0.31 PyMySQL==1.1.2"

say() { echo "glance.sh: $*" >&2; }

. "$(dirname "$0")/uwsgi-lib.sh"

# The [glance_store] part: one file store, or with GLANCE_STORES=multi two file backends,
# `fast` (the default, described) and `slow`, as tests/parity.rs configures glance-rs.
stores() {
  if [ "${GLANCE_STORES:-}" = multi ]; then
    mkdir -p "$dir/fast" "$dir/slow" "$dir/tasks"
    printf '[glance_store]\ndefault_backend = fast\n[fast]\nfilesystem_store_datadir = %s\n' "$dir/fast"
    printf 'store_description = Fast disks\n[slow]\nfilesystem_store_datadir = %s\n' "$dir/slow"
    printf '[os_glance_staging_store]\nfilesystem_store_datadir = %s\n' "$dir/staging"
    printf '[os_glance_tasks_store]\nfilesystem_store_datadir = %s\n' "$dir/tasks"
    printf '[DEFAULT]\nenabled_backends = fast:file, slow:file\n'
  else
    printf '[glance_store]\nstores = file\ndefault_store = file\n'
    printf 'filesystem_store_datadir = %s\n' "$dir/images"
  fi
}

setup() {
  mkdir -p "$dir/etc" "$dir/images" "$dir/staging" "$dir/locks"
  cp "$venv/etc/glance/glance-api-paste.ini" "$dir/etc/"
  cat >"$dir/etc/glance-api.conf" <<CONF
[DEFAULT]
# As glance-rs, which offers no import method yet.
enabled_import_methods = []
worker_self_reference_url = http://127.0.0.1:$port
node_staging_uri = file://$dir/staging
log_file = $dir/glance.log
[database]
connection = sqlite:///$dir/glance.sqlite
$(stores)
[oslo_policy]
policy_file = $dir/etc/policy.yaml
enforce_scope = false
# Glance's background tasks (location hashing) take a file lock there, as deployments set it.
[oslo_concurrency]
lock_path = $dir/locks
CONF
  if [ -n "${GLANCE_AUTH_URL:-}" ]; then
    # Tokens from that Keystone (scripts/keystone.sh's accounts), Glance's default policies.
    cat >>"$dir/etc/glance-api.conf" <<CONF
[paste_deploy]
flavor = keystone
[keystone_authtoken]
www_authenticate_uri = ${GLANCE_AUTH_URL%/v3}
auth_url = ${GLANCE_AUTH_URL%/v3}
interface = public
auth_type = password
username = glance
password = secret
project_name = service
user_domain_name = Default
project_domain_name = Default
CONF
    printf '%s\n' "${GLANCE_POLICY_YAML:-}" >"$dir/etc/policy.yaml"
  else
    printf '"%s": ""\n' default add_image upload_image download_image get_image get_images \
      delete_image modify_image deactivate reactivate get_member get_members add_member \
      modify_member delete_member stores_info_detail download_from_store get_image_location \
      delete_image_location >"$dir/etc/policy.yaml"
  fi
  printf '%s\n' "${GLANCE_EXTRA_CONF:-}" >>"$dir/etc/glance-api.conf"
  "$venv/bin/glance-manage" --config-file "$dir/etc/glance-api.conf" db_sync >"$dir/manage.log" 2>&1
  touch "$dir/.setup"
}

# Ceph's Python bindings (Debian's python3-rados and python3-rbd, which scripts/ceph.sh installs)
# made visible in the venv, for Glance's RBD store: they are not on PyPI.
link_ceph() {
  local site f
  site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["platlib"])')
  for f in /usr/lib/python3/dist-packages/rados.cpython-*.so /usr/lib/python3/dist-packages/rbd.cpython-*.so; do
    [ -e "$f" ] && ln -sf "$f" "$site/"
  done
  return 0
}

case "$cmd" in
  start)
    install
    link_ceph
    [ -e "$dir/.setup" ] || setup
    if ! { [ -s "$dir/uwsgi.pid" ] && kill -0 "$(cat "$dir/uwsgi.pid")" 2>/dev/null; }; then
      # Clients stream uploads chunked: uWSGI must pass such bodies through. The clients reuse
      # connections, which uWSGI's http-socket may reset: close after each reply.
      OS_GLANCE_CONFIG_DIR=$dir/etc "$venv/bin/uwsgi" --http-socket "127.0.0.1:$port" \
        --module glance.wsgi.api:application --master --processes "${GLANCE_PROCESSES:-2}" --threads 1 \
        --enable-threads --lazy-apps --die-on-term --http-auto-chunked --http-raw-body \
        --add-header "Connection: close" \
        --buffer-size 65535 --pidfile "$dir/uwsgi.pid" --daemonize2 "$dir/uwsgi.log" \
        --virtualenv "$venv" >>"$dir/uwsgi.log" 2>&1
    fi
    for _ in $(seq 1 150); do
      curl -sf "http://127.0.0.1:$port/versions" >/dev/null 2>&1 && break
      sleep 0.2
    done
    curl -sf "http://127.0.0.1:$port/versions" >/dev/null || { say "glance did not start; see $dir/uwsgi.log"; exit 1; }
    echo "GLANCE_URL=http://127.0.0.1:$port"
    ;;
  install) install ;;
  stop) stop ;;
  *) echo "usage: $0 install | start DIR [PORT] | stop DIR" >&2; exit 2 ;;
esac
