#!/usr/bin/env bash
# The metadata definition catalog next to the real Glance 33, in one run: both load the
# definition files Glance ships (glance-manage / glance-rs db load_metadefs), then the admin
# lists every namespace and shows each one with its properties and objects (what Horizon's
# metadata dialogs read), first once (cold caches) then ten times; both validate Keystone
# tokens (cached), SQLite on the same disk. Prints per server the cold and the median time of
# the whole walk, and glance-rs's share of Glance's time (target: under 0.10).
#
#   benches/metadefs.sh [WORKDIR]   (Glance installed by scripts/glance.sh when missing, a
#                                    Keystone started by scripts/keystone.sh unless
#                                    OS_AUTH_URL names one)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
release_build_in metadefs "${1:-}"
# Keystone: the one named, or our own for this run.
keystone_in "$work"
g=$work/glance
cleanup() {
  [ -d "$g" ] && scripts/glance.sh stop "$g" || true
  stop_servers
  [ -z "$ks_dir" ] || scripts/keystone.sh stop "$ks_dir" || true
}
trap cleanup EXIT
venv=${GLANCE_VENV:-$PWD/.test-env/glance/venv}
rm -rf "$g" "$work/rs"
GLANCE_VENV=$venv GLANCE_AUTH_URL=$auth scripts/glance.sh start "$g" "$(free_port)" >"$work/glance.out"
glance_url=$(sed -n 's/^GLANCE_URL=//p' "$work/glance.out")
files=$venv/etc/glance/metadefs
"$venv/bin/glance-manage" --config-file "$g/etc/glance-api.conf" db load_metadefs "$files" \
  >"$work/glance-load.log" 2>&1
start_server "$work/rs" "$bin" "[paste_deploy]" "flavor = keystone" "[keystone_authtoken]" \
  "www_authenticate_uri = $auth_base" "auth_url = $auth_base" "username = glance" \
  "password = secret" "project_name = service"
"$bin" --config-file "$work/rs/glance-api.conf" db load_metadefs "$files" >/dev/null 2>&1
TOKEN=$(curl -sf -i -X POST "$auth/auth/tokens" -H 'Content-Type: application/json' -d '{"auth":
  {"identity": {"methods": ["password"], "password": {"user": {"name": "admin",
   "password": "secret", "domain": {"id": "default"}}}},
   "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}' |
  awk -F': ' 'tolower($1) == "x-subject-token" { print $2 }' | tr -d '\r')
python3 - "$TOKEN" "$glance_url" "$SERVER_URL" <<'PY'
import json, statistics, sys, time, urllib.parse, urllib.request
token, urls = sys.argv[1], dict(zip(("glance", "glance-rs"), sys.argv[2:]))
def get(base, path):
    req = urllib.request.Request(base + path, headers={"X-Auth-Token": token})
    return json.load(urllib.request.urlopen(req))
def walk(base):
    t = time.perf_counter()
    names = [n["namespace"] for n in get(base, "/v2/metadefs/namespaces?limit=100")["namespaces"]]
    for n in names:
        get(base, "/v2/metadefs/namespaces/" + urllib.parse.quote(n))
    return time.perf_counter() - t, len(names)
res = {}
for name, base in urls.items():
    cold, n = walk(base)
    warm = statistics.median(walk(base)[0] for _ in range(10))
    res[name] = (cold, warm)
    print(f"{name:10} {n} namespaces, list + show each: cold {cold * 1000:7.1f} ms, "
          f"median of 10 {warm * 1000:7.1f} ms")
g, r = res["glance"], res["glance-rs"]
print(f"glance-rs / glance: cold {r[0] / g[0]:.3f}, warm {r[1] / g[1]:.3f} (target < 0.10)")
PY
