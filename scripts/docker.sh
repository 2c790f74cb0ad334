#!/usr/bin/env bash
# A private Docker engine for the compose test (Debian's docker.io): its own socket, data and
# pid under DIR, no bridge and no iptables rules (the containers use the host's network, so all
# traffic stays on 127.0.0.1), and a `debian:bookworm-slim` base image made with debootstrap
# where no registry can be reached.
#
#   scripts/docker.sh start DIR   start dockerd unless it runs; make the base image if missing;
#                                 prints DOCKER_HOST=unix://DIR/docker.sock
#   scripts/docker.sh stop DIR    stop the dockerd whose pid is in DIR/dockerd.pid
set -euo pipefail

cmd=${1:?start|stop}
dir=$(realpath -m "${2:?engine directory}")
sock=$dir/docker.sock
export DOCKER_HOST=unix://$sock

say() { echo "docker.sh: $*" >&2; }

alive() { [ -s "$dir/dockerd.pid" ] && kill -0 "$(cat "$dir/dockerd.pid")" 2>/dev/null; }

stop() {
  alive || return 0
  local pid; pid=$(cat "$dir/dockerd.pid")
  kill "$pid"
  for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$dir/dockerd.pid"
}

case "$cmd" in
  start)
    command -v dockerd >/dev/null || { say "dockerd not found: install Debian's docker.io (scripts/install-deps does)"; exit 1; }
    mkdir -p "$dir"
    if ! alive; then
      dockerd --data-root "$dir/data" --exec-root "$dir/exec" --pidfile "$dir/dockerd.pid" \
        -H "$DOCKER_HOST" --bridge=none --iptables=false --ip6tables=false \
        >"$dir/dockerd.log" 2>&1 &
      for _ in $(seq 1 150); do docker info >/dev/null 2>&1 && break; sleep 0.2; done
      docker info >/dev/null 2>&1 || { say "dockerd did not start; see $dir/dockerd.log"; tail -20 "$dir/dockerd.log" >&2; exit 1; }
    fi
    if ! docker image inspect debian:bookworm-slim >/dev/null 2>&1 \
      && ! docker pull -q debian:bookworm-slim >/dev/null 2>&1; then
      say "making debian:bookworm-slim with debootstrap"
      root=$dir/rootfs
      rm -rf "$root"
      mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
      debootstrap --variant=minbase bookworm "$root" "${mirror:-http://deb.debian.org/debian}" \
        >"$dir/debootstrap.log" 2>&1 || { tail -20 "$dir/debootstrap.log" >&2; exit 1; }
      rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*
      tar -C "$root" -c . | docker import - debian:bookworm-slim >/dev/null
      rm -rf "$root"
    fi
    echo "DOCKER_HOST=$DOCKER_HOST"
    ;;
  stop) stop ;;
  *) echo "usage: $0 start DIR | stop DIR" >&2; exit 2 ;;
esac
