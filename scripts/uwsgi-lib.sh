# Sourced by scripts/keystone.sh and scripts/glance.sh: a service from PyPI in a virtualenv,
# served by uWSGI with its pid in DIR/uwsgi.pid. The caller sets dir, venv, packages and say().

# stop: stops the uWSGI whose pid is in $dir/uwsgi.pid (SIGINT, SIGKILL after 10 s).
stop() {
  [ -s "$dir/uwsgi.pid" ] || return 0
  local pid; pid=$(cat "$dir/uwsgi.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill -INT "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/uwsgi.pid"
}

# install: creates $venv with $packages unless it holds exactly those already.
install() {
  if [ "$(cat "$venv/.packages" 2>/dev/null)" = "$packages" ]; then return 0; fi
  say "installing $packages into $venv"
  python3 -m venv "$venv"
  # shellcheck disable=SC2086
  "$venv/bin/pip" install -q --disable-pip-version-check $packages
  echo "$packages" >"$venv/.packages"
}
