#!/usr/bin/env bash
# A Keystone for tests: keystone from PyPI served by uWSGI on 127.0.0.1, SQLite, fernet tokens,
# bootstrapped with what the tests use.
#
#   scripts/keystone.sh start DIR [PORT]   install into DIR/venv if missing, bootstrap if DIR is
#                                          new (the endpoints again if PORT changed), start
#                                          uWSGI, wait until it answers; prints
#                                          OS_AUTH_URL=http://127.0.0.1:PORT/v3
#   scripts/keystone.sh stop DIR           stop the uWSGI whose pid is in DIR/uwsgi.pid
#   scripts/keystone.sh install DIR        only install (into $KEYSTONE_VENV or DIR/venv)
#
# Accounts (password "secret" everywhere): admin (project admin; admin of the system and of the
# Default domain too, for system- and domain-scoped tokens), glance (project service, roles
# admin and service), alice (project p1, member and reader), bob (project p2, member and
# reader), carol (project p1, reader only), dave (project p1, admin); the image service in the
# catalog at http://127.0.0.1:$GLANCE_CATALOG_PORT (default 9292). Glance's RBAC personas:
# dave, alice and carol are p1's admin, member and reader, bob another project's member.
set -euo pipefail

cmd=${1:?start|stop}
dir=$(realpath -m "${2:?keystone directory}")
port=${3:-35357}
venv=${KEYSTONE_VENV:-$dir/venv}
conf=$dir/keystone.conf
pw=secret
packages="keystone==30.0.0 uWSGI==2.0.31"

say() { echo "keystone.sh: $*" >&2; }

. "$(dirname "$0")/uwsgi-lib.sh"

manage() { OS_KEYSTONE_CONFIG_FILES=$conf "$venv/bin/keystone-manage" --config-file "$conf" "$@" 2>>"$dir/manage.log"; }

bootstrap() {
  say "bootstrapping in $dir"
  mkdir -p "$dir/fernet-keys" "$dir/credential-keys"
  cat >"$conf" <<CONF
[DEFAULT]
log_file = $dir/keystone.log
[database]
connection = sqlite:///$dir/keystone.db
[token]
provider = fernet
expiration = ${KEYSTONE_TOKEN_EXPIRATION:-3600}
[fernet_tokens]
key_repository = $dir/fernet-keys
[credential]
key_repository = $dir/credential-keys
CONF
  local me; me=$(id -un)
  manage db_sync
  manage fernet_setup --keystone-user "$me" --keystone-group "$(id -gn)"
  manage credential_setup --keystone-user "$me" --keystone-group "$(id -gn)"
  identity_at "$port"
}

# identity_at PORT: the admin and the identity endpoints at PORT (bootstrap updates them when
# they name another), recorded in the stamp: the catalog is what keystonemiddleware validates
# tokens through, so a directory started again on another port must not keep the old one.
identity_at() {
  manage bootstrap --bootstrap-password "$pw" --bootstrap-admin-url "http://127.0.0.1:$1/v3" \
    --bootstrap-public-url "http://127.0.0.1:$1/v3" --bootstrap-region-id RegionOne >/dev/null
  echo "$1" >"$dir/.bootstrapped"
}

osc() {
  "$venv/bin/python" - "$@" <<'PY'
import sys
from keystoneauth1 import session
from keystoneauth1.identity import v3
url, pw = sys.argv[1], sys.argv[2]
auth = v3.Password(auth_url=url, username="admin", password=pw, project_name="admin",
                   user_domain_id="default", project_domain_id="default")
s = session.Session(auth=auth)
def find_or_create(kind, name, body):
    found = s.get(f"{url}/{kind}s?name={name}").json()[f"{kind}s"]
    if found:
        return found[0]["id"]
    return s.post(f"{url}/{kind}s", json={kind: dict(name=name, **body)}).json()[kind]["id"]
roles = {r: find_or_create("role", r, {}) for r in ("admin", "member", "reader", "service")}
def user(name, project, role_names):
    p = find_or_create("project", project, {"domain_id": "default"})
    u = find_or_create("user", name, {"domain_id": "default", "password": pw, "default_project_id": p})
    for r in role_names:
        s.put(f"{url}/projects/{p}/users/{u}/roles/{roles[r]}")
user("glance", "service", ["admin", "service"])
user("alice", "p1", ["member", "reader"])
user("bob", "p2", ["member", "reader"])
user("carol", "p1", ["reader"])
user("dave", "p1", ["admin"])
admin = find_or_create("user", "admin", {})
s.put(f"{url}/system/users/{admin}/roles/{roles['admin']}")
s.put(f"{url}/domains/default/users/{admin}/roles/{roles['admin']}")
# The image service in the catalog, where the tests' catalog-login test serves it.
image_url = sys.argv[3]
services = s.get(f"{url}/services?type=image").json()["services"]
sid = services[0]["id"] if services else s.post(f"{url}/services", json={"service": {"name": "glance", "type": "image"}}).json()["service"]["id"]
if not s.get(f"{url}/endpoints?service_id={sid}").json()["endpoints"]:
    for iface in ("public", "internal", "admin"):
        s.post(f"{url}/endpoints", json={"endpoint": {"service_id": sid, "interface": iface, "url": image_url, "region_id": "RegionOne"}})
PY
}

case "$cmd" in
  install) install ;;
  start)
    install
    mkdir -p "$dir"
    [ -e "$dir/.bootstrapped" ] || bootstrap
    [ "$(cat "$dir/.bootstrapped")" = "$port" ] || { say "identity endpoints moved to port $port"; identity_at "$port"; }
    if ! { [ -s "$dir/uwsgi.pid" ] && kill -0 "$(cat "$dir/uwsgi.pid")" 2>/dev/null; }; then
      # keystoneauth reuses connections; uWSGI's http-socket resets them: close after each reply.
      OS_KEYSTONE_CONFIG_FILES=$conf "$venv/bin/uwsgi" --http-socket "127.0.0.1:$port" \
        --module keystone.wsgi.api:application --master --processes 2 --threads 2 \
        --enable-threads --lazy-apps --die-on-term --add-header "Connection: close" \
        --pidfile "$dir/uwsgi.pid" --daemonize2 "$dir/uwsgi.log" --virtualenv "$venv"
    fi
    for _ in $(seq 1 300); do
      curl -sf "http://127.0.0.1:$port/v3" >/dev/null 2>&1 && break
      sleep 0.2
    done
    curl -sf "http://127.0.0.1:$port/v3" >/dev/null || { say "keystone did not start; see $dir/uwsgi.log"; exit 1; }
    # The stamp names the accounts' version: a directory made by an older script gains the new ones.
    [ -e "$dir/.accounts-2" ] || { osc "http://127.0.0.1:$port/v3" "$pw" "http://127.0.0.1:${GLANCE_CATALOG_PORT:-9292}" && touch "$dir/.accounts-2"; }
    echo "OS_AUTH_URL=http://127.0.0.1:$port/v3"
    ;;
  stop) stop ;;
  *) echo "usage: $0 start DIR [PORT] | stop DIR | install DIR" >&2; exit 2 ;;
esac
