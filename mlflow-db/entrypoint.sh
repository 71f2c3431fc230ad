#!/usr/bin/env bash
# Entrypoint of the mlflow-db service, in front of the postgres image's own one. It works with
# the official postgres:15 image and the air-gapped stand-in, as uid 999 or as root:
#
# 1. Refuses bad settings at once (ensure-roles.sh --check): the container exits 1.
# 2. Starts the ensure step (ensure-roles.sh) in the background. It waits until PostgreSQL
#    accepts TCP connections on 127.0.0.1 (on a fresh volume the image first runs a set-up
#    server that listens on the socket only), runs the step, retrying while the connection
#    fails, and on success writes the marker healthcheck.sh requires. It is detached twice so
#    that its parent is the container's init (compose `init: true`), not the postmaster (which
#    takes an unknown child's non-zero exit for a crash); it exits 0 whatever happens, and
#    says in the log when it gives up.
# 3. Replaces itself with the image's entrypoint: PostgreSQL receives `docker stop`'s signal.
set -Eeuo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly here
readonly marker=/var/run/postgresql/mlflow-db.ensured  # also in healthcheck.sh

# `entrypoint.sh -c foo=bar` means `postgres -c foo=bar`, as in the image.
if [ "$#" -eq 0 ] || [ "${1:0:1}" = - ]; then
  set -- postgres "$@"
fi
if [ "$1" != postgres ]; then
  exec docker-entrypoint.sh "$@"
fi

bash "$here/ensure-roles.sh" --check
rm -f "$marker"

ensure_when_ready() {
  local attempt status
  until pg_isready --quiet --host 127.0.0.1 --port "${PGPORT:-5432}" \
    --username "${POSTGRES_USER:-postgres}"; do
    sleep 1
  done
  for attempt in 1 2 3 4 5 6 7 8 9 10; do
    status=0
    bash "$here/ensure-roles.sh" || status=$?
    if [ "$status" -eq 0 ]; then
      touch "$marker"
      return
    fi
    # Only a refused or lost connection (psql's status 2) is worth another try.
    if [ "$status" -ne 2 ]; then
      break
    fi
    echo "mlflow-db ensure: attempt $attempt could not reach the server; retrying" >&2
    sleep 2
  done
  echo "mlflow-db ensure: gave up; mlflow-db stays unhealthy until this is fixed and it is" \
    "restarted (or: docker compose exec mlflow-db bash /mlflow-db/ensure-roles.sh)" >&2
}

# Double fork: the outer subshell exits at once, orphaning the job to the init.
( (set +e; ensure_when_ready; exit 0) </dev/null & )

exec docker-entrypoint.sh "$@"
