#!/usr/bin/env bash
# A Docker Engine for `make test-compose`: use the one that runs, or start one, and later stop only that one.
#
#   scripts/docker-engine.sh start   0: a daemon answers (printed: "running" or "started"); 3: Docker cannot run
#                                    here (the reason on stderr: the caller skips); 1: anything else
#   scripts/docker-engine.sh stop    stops the daemon only if `start` started it and nobody still uses it
#
# When no daemon answers, `start` installs Debian's docker.io if dockerd is missing (root and apt-get needed),
# starts `dockerd` in the background with its log in $STATE/dockerd.log, and waits for `docker info`.
# Users of the engine hold a shared lock on $STATE/users.lock while they need it; `stop` stops the daemon
# it started only when it can take that lock exclusively, so one test run never pulls the engine from
# under another.
set -euo pipefail

STATE="${GEMMA4_DOCKER_STATE:-${TMPDIR:-/tmp}/gemma4-serve-docker}"
mkdir -p "$STATE"

say() { printf 'docker-engine: %s\n' "$*" >&2; }
cannot() {
  say "$*"
  exit 3
}

answers() { timeout 20 docker info >/dev/null 2>&1; }

start() {
  local pid
  command -v docker >/dev/null || cannot "no docker command on PATH (Debian: apt-get install docker.io)"
  if answers; then
    echo running
    return
  fi
  if ! command -v dockerd >/dev/null; then
    [[ "$(id -u)" == 0 ]] || cannot "no Docker daemon answers and dockerd is not installed; installing it needs root"
    command -v apt-get >/dev/null || cannot "no Docker daemon answers and this is not a Debian-like system (no apt-get)"
    say "installing Debian's docker.io (once per machine)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker.io >"$STATE/apt.log" 2>&1 ||
      cannot "apt-get install docker.io failed (see $STATE/apt.log)"
  fi
  [[ "$(id -u)" == 0 ]] || cannot "no Docker daemon answers, and starting dockerd needs root"
  say "starting dockerd (log: $STATE/dockerd.log)"
  setsid dockerd --pidfile "$STATE/dockerd.pid" >"$STATE/dockerd.log" 2>&1 </dev/null &
  pid=$!
  for _ in $(seq 60); do
    if answers; then
      echo "$pid" >"$STATE/started-by-us"
      echo started
      return
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 1
  done
  kill "$pid" 2>/dev/null || true
  cannot "dockerd did not come up (a container without the privileges to run Docker?); its log ends with:
$(tail -n 5 "$STATE/dockerd.log" 2>/dev/null)"
}

stop() {
  local pid
  [[ -f "$STATE/started-by-us" ]] || return 0
  exec {users}>"$STATE/users.lock"
  if ! flock -xn "$users"; then
    say "the engine is still in use by another run: left running"
    return 0
  fi
  pid="$(cat "$STATE/started-by-us")"
  rm -f "$STATE/started-by-us"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 30); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 1
    done
    say "stopped the dockerd it started (pid $pid)"
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *)
    echo "usage: scripts/docker-engine.sh start|stop" >&2
    exit 2
    ;;
esac
