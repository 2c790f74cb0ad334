#!/usr/bin/env bash
# A one-node Ceph cluster for tests: one mon, one mgr, one bluestore OSD on a sparse file,
# cephx on, every socket on 127.0.0.1, no systemd; pools `images` and `volumes` for RBD.
#
#   scripts/ceph.sh start DIR   install packages if missing, create the cluster if DIR is new,
#                               start what is not running, wait until the pools take I/O;
#                               prints CEPH_CONF=... and CEPH_FSID=... lines
#   scripts/ceph.sh empty DIR   delete and recreate the pools `images` and `volumes` if they
#                               hold any RBD image (tests drop their databases, not their
#                               images: a few dozen runs would fill the 10 GiB OSD)
#   scripts/ceph.sh stop DIR    stop the daemons whose pid files are in DIR
#
# Every ceph/rbd/rados call is wrapped in `timeout`: they hang forever when the OSD is down.
set -euo pipefail

cmd=${1:?start|stop}
dir=$(realpath -m "${2:?cluster directory}")
conf=$dir/ceph.conf
mon_port=${CEPH_MON_PORT:-3300}
wait_secs=${CEPH_START_TIMEOUT:-180}
packages="ceph-mon ceph-osd ceph-mgr ceph-common librados-dev libradospp-dev librbd-dev"

say() { echo "ceph.sh: $*" >&2; }
fail() { say "$*"; exit 1; }
cli() { timeout 30 ceph -c "$conf" --connect-timeout 10 "$@"; }

pid_of() { # live pid of daemon $1 (mon.a, mgr.x, osd.0) started with our conf
  local f=$dir/run/ceph-$1.pid pid
  [ -s "$f" ] || return 1
  pid=$(cat "$f")
  tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- "-c $conf" || return 1
  echo "$pid"
}

until_ok() { # what, command...: retry for up to $wait_secs
  local what=$1 end=$((SECONDS + wait_secs)); shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || fail "timed out waiting for $what (logs: $dir/log)"
    sleep 0.5
  done
}

start_daemon() { # mon.a | mgr.x | osd.0
  local type=${1%%.*} id=${1#*.} end=$((SECONDS + wait_secs))
  pid_of "$1" >/dev/null && return 0
  # A mon that just started can refuse logins for a few seconds: retry.
  until "ceph-$type" -c "$conf" -i "$id" >>"$dir/log/start-$1.out" 2>&1; do
    [ $SECONDS -lt $end ] || fail "ceph-$type -i $id does not start: $(tail -2 "$dir/log/start-$1.out")"
    sleep 1
  done
}

install() {
  local missing=() p
  for p in $packages; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
}

create() {
  say "creating a cluster in $dir"
  rm -rf "$dir"
  mkdir -p "$dir"/{run,log,mon/ceph-a,mgr/ceph-x,osd/ceph-0}
  local fsid; fsid=$(cat /proc/sys/kernel/random/uuid)
  cat >"$conf" <<CONF
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$mon_port]
mon initial members = a
public network = 127.0.0.0/8
ms bind ipv6 = false
ms bind msgr1 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
run dir = $dir/run
pid file = $dir/run/\$cluster-\$name.pid
auth allow insecure global id reclaim = false
log file = $dir/log/\$cluster-\$name.log
mon cluster log file = $dir/log/cluster.log
osd pool default size = 1
osd pool default min size = 1
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon data avail warn = 2
mon data avail crit = 1
[client]
keyring = $dir/client.admin.keyring
# Clients (the tests' rbd commands, glance-rs) run many at once: no admin sockets, no log files.
admin socket =
log file = /dev/null
[mon]
admin socket = $dir/run/\$cluster-\$name.asok
mon data = $dir/mon/\$cluster-\$id
[mgr]
admin socket = $dir/run/\$cluster-\$name.asok
mgr data = $dir/mgr/\$cluster-\$id
[osd]
admin socket = $dir/run/\$cluster-\$name.asok
osd data = $dir/osd/\$cluster-\$id
osd objectstore = bluestore
bluestore block create = true
bluestore block size = 10737418240
osd memory target = 1073741824
CONF
  ceph-authtool --create-keyring "$dir/client.admin.keyring" --gen-key -n client.admin \
    --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *'  >/dev/null
  ceph-authtool --create-keyring "$dir/mon.keyring" --gen-key -n mon. --cap mon "allow *" >/dev/null
  ceph-authtool "$dir/mon.keyring" --import-keyring "$dir/client.admin.keyring" >/dev/null
  monmaptool --create --addv a "[v2:127.0.0.1:$mon_port]" --fsid "$fsid" "$dir/monmap" >/dev/null
  ceph-mon -c "$conf" --mkfs -i a --monmap "$dir/monmap" --keyring "$dir/mon.keyring" \
    >>"$dir/log/mkfs.out" 2>&1 || fail "mon mkfs failed (see $dir/log/mkfs.out)"
  start_daemon mon.a
  until_ok "the mon" cli mon stat
  local uuid key
  uuid=$(cat /proc/sys/kernel/random/uuid)
  key=$(ceph-authtool --gen-print-key)
  printf '{"cephx_secret": "%s"}' "$key" >"$dir/osd.json"
  [ "$(cli osd new "$uuid" -i "$dir/osd.json")" = 0 ] || fail "osd new did not give id 0"
  printf '[osd.0]\n\tkey = %s\n' "$key" >"$dir/osd/ceph-0/keyring"
  ceph-osd -c "$conf" -i 0 --mkfs --key "$key" --osd-uuid "$uuid" >>"$dir/log/mkfs.out" 2>&1 ||
    fail "osd mkfs failed (see $dir/log/mkfs.out)"
  cli auth get-or-create mgr.x mon 'allow profile mgr' osd 'allow *' mds 'allow *' \
    -o "$dir/mgr/ceph-x/keyring" >/dev/null
  rm -f "$dir/osd.json" "$dir/monmap" "$dir/mon.keyring"
  touch "$dir/.created"
}

make_pools() { # the RBD pools, created where missing, once they take I/O
  local pool
  for pool in images volumes; do
    cli osd pool ls | grep -qx "$pool" || cli osd pool create "$pool" 16 >/dev/null 2>&1
    cli osd pool application get "$pool" 2>/dev/null | grep -q rbd || timeout 60 rbd -c "$conf" pool init "$pool"
    until_ok "I/O on pool $pool" pool_takes_io "$pool"
  done
}

pool_takes_io() {
  echo probe | timeout 30 rados -c "$conf" -p "$1" put probe - && timeout 30 rados -c "$conf" -p "$1" rm probe
}

stop() {
  local name pid pids=()
  for name in mgr.x osd.0 mon.a; do
    if pid=$(pid_of "$name"); then kill "$pid" 2>/dev/null || true; pids+=("$pid"); fi
    # the mon goes last, once the others are gone
    if [ "$name" = osd.0 ]; then
      for pid in "${pids[@]}"; do
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -9 "$pid" 2>/dev/null || true
      done
      pids=()
    fi
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
  done
}

case "$cmd" in
  start)
    install
    [ -e "$dir/.created" ] || create
    mkdir -p "$dir/run" "$dir/log"
    start_daemon mon.a
    until_ok "the mon" cli mon stat
    start_daemon mgr.x
    start_daemon osd.0
    until_ok "osd.0" sh -c "timeout 30 ceph -c '$conf' osd stat -f json | grep -q '\"num_up_osds\":1'"
    make_pools
    echo "CEPH_CONF=$conf"
    echo "CEPH_FSID=$(sed -n 's/^fsid = //p' "$conf")"
    ;;
  empty)
    deleted=0
    for pool in images volumes; do
      # A pool rbd cannot list (missing, say) counts as empty: `start` makes it again.
      images=$({ timeout 30 rbd -c "$conf" ls "$pool" 2>/dev/null || true; } | wc -l)
      trashed=$({ timeout 30 rbd -c "$conf" trash ls "$pool" 2>/dev/null || true; } | wc -l)
      if [ $((images + trashed)) -gt 0 ]; then
        say "pool $pool holds $images images and $trashed in its trash: recreating it"
        cli osd pool delete "$pool" "$pool" --yes-i-really-really-mean-it >/dev/null ||
          fail "could not delete pool $pool"
        deleted=1
      fi
    done
    [ $deleted = 0 ] || make_pools
    ;;
  stop) stop ;;
  *) echo "usage: $0 start DIR | empty DIR | stop DIR" >&2; exit 2 ;;
esac
