#!/usr/bin/env bash
# Cost of Keystone auth on a hot path: GET /v2/images/{id} latency with a warm token cache,
# next to the same request on a noauth server, in one run (same machine, same database kind).
#
#   OS_AUTH_URL=http://127.0.0.1:35357/v3 benches/bench-auth.sh   (scripts/keystone.sh start DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
: "${OS_AUTH_URL:?set OS_AUTH_URL (scripts/keystone.sh start DIR)}"
work=$(mktemp -d /tmp/glance-bench-auth.XXXXXX)
cargo build --release -q
bin=$PWD/target/release/glance-rs
base=${OS_AUTH_URL%/v3}
. benches/lib.sh
trap stop_servers EXIT
start_server "$work/noauth" "$bin"; noauth=$SERVER_URL
start_server "$work/keystone" "$bin" "[paste_deploy]" "flavor = keystone" "[keystone_authtoken]" \
  "auth_url = $base" "username = glance" "password = secret" "project_name = service" \
  "user_domain_name = Default" "project_domain_name = Default"
keystone=$SERVER_URL
python3 - "$noauth" "$keystone" "$OS_AUTH_URL" <<'PY'
import http.client, json, sys, time, urllib.parse
noauth, keystone, auth = sys.argv[1:]
def conn(url):
    u = urllib.parse.urlparse(url)
    return http.client.HTTPConnection(u.hostname, u.port)
def call(c, method, path, body=None, headers={}):
    c.request(method, path, body=body and json.dumps(body), headers={"Content-Type": "application/json", **headers})
    r = c.getresponse(); data = r.read()
    return r, data
a = urllib.parse.urlparse(auth)
kc = http.client.HTTPConnection(a.hostname, a.port)
r, _ = call(kc, "POST", a.path + "/auth/tokens", {"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "alice", "password": "secret", "domain": {"id": "default"}}}}, "scope": {"project": {"name": "p1", "domain": {"id": "default"}}}}})
token = r.getheader("X-Subject-Token")
def measure(url, headers, n=500):
    c = conn(url)
    r, data = call(c, "POST", "/v2/images", {"name": "bench"}, headers)
    img = json.loads(data)["id"]
    for _ in range(50):
        call(c, "GET", "/v2/images/" + img, headers=headers)  # warm up (and the token cache)
    t = []
    for _ in range(n):
        s = time.perf_counter(); r, _ = call(c, "GET", "/v2/images/" + img, headers=headers); t.append(time.perf_counter() - s)
        assert r.status == 200, r.status
    t.sort()
    return t[n // 2] * 1000, t[int(n * 0.9)] * 1000
na = measure(noauth, {"X-Project-Id": "p1", "X-Roles": "member,reader"})
ks = measure(keystone, {"X-Auth-Token": token})
print("GET /v2/images/{id}: noauth p50 %.2f ms p90 %.2f ms; keystone (warm cache) p50 %.2f ms p90 %.2f ms; ratio %.2f" % (na[0], na[1], ks[0], ks[1], ks[0] / na[0]))
PY
