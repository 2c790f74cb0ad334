# Sourced by the bench scripts.

SERVER_PIDS=()

# release_build_in NAME [WORKDIR]: moves to the repository, builds the release binary; sets
# `work` (WORKDIR, or a new /tmp/NAME.XXXXXX) and `bin`.
release_build_in() {
  cd "$(dirname "${BASH_SOURCE[0]}")/.."
  work=${2:-$(mktemp -d "/tmp/$1.XXXXXX")}
  mkdir -p "$work"
  cargo build --release -q
  bin=$PWD/target/release/glance-rs
}

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

# mbps BYTES SECONDS; now (a timestamp); secs T0 T1 (seconds between two of them).
mbps() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.0f", b / s / 1e6 }'; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

# need_time: GNU time (the CPU a command used) is there, or the script stops saying how to get it.
need_time() { [ -x /usr/bin/time ] || { echo "needs /usr/bin/time: apt-get install time" >&2; exit 2; }; }

# drop_caches: empties the page cache (root), so that the next read goes to the disk.
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }

# threads PID: "tid name ticks" for each of its threads (user + system CPU).
threads() {
  for t in /proc/$1/task/*; do
    echo "${t##*/} $(tr ' ' _ <"$t/comm" 2>/dev/null) $(awk '{ sub(/.*\) /, ""); print $12 + $13 }' "$t/stat" 2>/dev/null)"
  done
}

# thread_cpu HZ SECONDS BEFORE AFTER: the CPU seconds each thread spent between two `threads`
# listings over SECONDS of elapsed time, and its share of that time, busiest first.
thread_cpu() {
  awk -v hz="$1" -v el="$2" 'NR == FNR { b[$1] = $3; next }
    { d = ($3 - b[$1]) / hz; if (d >= 0.05) printf "  %-8s %-16s %5.2f s  %3.0f%% of the time\n", $1, $2, d, 100 * d / el }' \
    "$3" "$4" | sort -k3 -nr
}

# process_ticks PID: the CPU ticks (user + system) all of PID's threads have spent so far.
process_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# osd_ticks CEPH_CONF: the CPU ticks the cluster's OSD on this machine has spent so far (0 if none).
osd_ticks() {
  local p; p=$(pgrep -f "ceph-osd .*-c $1" | head -1 || true)
  if [ -n "$p" ]; then process_ticks "$p"; else echo 0; fi
}

# core_share TICKS SECONDS: TICKS of CPU over SECONDS of elapsed time, as a percentage of one core.
core_share() { awk -v t="$1" -v e="$2" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.0f", 100 * t / hz / e }'; }

# idle_share BEFORE AFTER: the percentage of both cores' time left idle (idle + iowait) between
# two first lines of /proc/stat.
idle_share() {
  awk -v a="$1" -v b="$2" 'BEGIN { n = split(a, x, " "); split(b, y, " ")
    for (i = 2; i <= n; i++) { d = y[i] - x[i]; t += d; if (i == 5 || i == 6) idle += d }
    printf "%.0f", 100 * idle / t }'
}

# machine_busy: CPU ticks (user, system, interrupts) all cores have spent since boot.
machine_busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat; }
# machine_steal: CPU ticks the hypervisor gave to others while this VM wanted them (steal).
machine_steal() { awk '/^cpu / { print $9 }' /proc/stat; }

# openssl_mbps ALGO: the MB/s of ALGO in `openssl speed -bytes N` output on stdin.
openssl_mbps() {
  awk -v a="$1" '$1 == a { v = $NF; sub("k", "", v); printf "%.0f", v * 1000 / 1e6 }'
}

# The object size of the RBD images the store makes (rbd_store_chunk_size, 8 MiB by default, as
# Glance's): `rbd import` makes the same, so both read and write objects of one size (with its
# own default, 4 MiB, `rbd export` runs ~5-8% faster here and the OSD spends less per GiB).
rbd_object_size=8M

# import_beside_digests CEPH_CONF FILE: MB/s of `rbd import` of FILE (into images/, removed
# after) while `openssl dgst` computes its MD5 and sha512 at the same time, until all three
# end: what an upload that hashes could do with the rbd CLI's own client on this machine.
import_beside_digests() {
  local conf=$1 file=$2 name="bench-digests-$$" bytes t0 t1
  bytes=$(stat -c %s "$file")
  t0=$(now)
  openssl dgst -md5 "$file" >/dev/null & local p1=$!
  openssl dgst -sha512 "$file" >/dev/null & local p2=$!
  timeout 300 rbd -c "$conf" import --no-progress --object-size "$rbd_object_size" "$file" "images/$name"
  wait "$p1" "$p2"
  t1=$(now)
  timeout 300 rbd -c "$conf" rm --no-progress "images/$name" >/dev/null
  mbps "$bytes" "$(secs "$t0" "$t1")"
}

# ratio A B: A / B to two decimals.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

# auth_header: the curl arguments that send $TOKEN (none without one).
auth_header() { [ -z "${TOKEN:-}" ] || printf '%s\n' -H "X-Auth-Token: $TOKEN"; }

# create_image URL NAME: a raw/bare image; prints its id. With $TOKEN, as its owner.
create_image() {
  local auth; mapfile -t auth < <(auth_header)
  curl -sf -X POST "$1/v2/images" "${auth[@]}" -H 'Content-Type: application/json' \
    -d "{\"name\": \"$2\", \"disk_format\": \"raw\", \"container_format\": \"bare\"}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'
}

# best_of N BYTES COMMAND...: the best MB/s of N runs of COMMAND moving BYTES.
best_of() {
  local n=$1 bytes=$2 best=0 t0 t1 r; shift 2
  for _ in $(seq 1 "$n"); do
    t0=$(now); "$@"; t1=$(now)
    r=$(mbps "$bytes" "$(secs "$t0" "$t1")")
    [ "$r" -gt "$best" ] && best=$r
  done
  echo "$best"
}

# fill_images URL N: creates N image records (with a property and two tags); prints the mean
# milliseconds per create. With $TOKEN, as its owner.
fill_images() {
  python3 - "$1" "$2" <<'PY'
import json, os, sys, time, urllib.request
url, n = sys.argv[1], int(sys.argv[2])
auth = {"X-Auth-Token": os.environ["TOKEN"]} if os.environ.get("TOKEN") else {}
t = time.perf_counter()
for i in range(n):
    r = urllib.request.Request(url + "/v2/images", method="POST",
                               data=json.dumps({"name": "img-%04d" % i, "os_distro": "bench",
                                                "tags": ["a", "b"]}).encode(),
                               headers=dict(auth, **{"Content-Type": "application/json"}))
    urllib.request.urlopen(r).read()
print("%.1f" % (1000 * (time.perf_counter() - t) / n))
PY
}

# list_latency URL: p50 and p90 of GET /v2/images: default page, limit=1000, a property filter
# sorted by name, a tag filter; one line each. With $TOKEN, as its owner.
list_latency() {
  python3 - "$1" <<'PY'
import os, sys, time, urllib.request
url = sys.argv[1]
auth = {"X-Auth-Token": os.environ["TOKEN"]} if os.environ.get("TOKEN") else {}
for q, label in (("", "default page (25)"), ("?limit=1000", "limit=1000"),
                 ("?os_distro=bench&sort=name:asc&limit=25", "property filter, sort by name"),
                 ("?tag=a&limit=25", "tag filter")):
    times = []
    for _ in range(100 if "1000" not in q else 20):
        t = time.perf_counter()
        urllib.request.urlopen(urllib.request.Request(url + "/v2/images" + q, headers=auth)).read()
        times.append(time.perf_counter() - t)
    times.sort()
    print("%s: p50 %.1f ms, p90 %.1f ms" % (label, 1000 * times[len(times) // 2],
                                             1000 * times[int(len(times) * 0.9)]))
PY
}

# free_port: a loopback port nobody holds.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# keystone_in WORK: the Keystone OS_AUTH_URL names, or one started in WORK/keystone (then
# `ks_dir` names it, for scripts/keystone.sh stop). Sets `auth` and `auth_base`.
keystone_in() {
  ks_dir=""
  if [ -z "${OS_AUTH_URL:-}" ]; then
    ks_dir=$1/keystone
    OS_AUTH_URL=$(scripts/keystone.sh start "$ks_dir" "$(free_port)" | sed -n 's/^OS_AUTH_URL=//p')
  fi
  auth=$OS_AUTH_URL; auth_base=${auth%/v3}
}
