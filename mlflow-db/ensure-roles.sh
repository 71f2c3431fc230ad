#!/usr/bin/env bash
# The "ensure" step of mlflow-db: makes the cluster match what MLflow and the prediction log
# of the monitoring loop need, and no more.
# Idempotent; entrypoint.sh runs it at every start of the container, as the superuser, over
# the local Unix socket. Safe to run again by hand, e.g. after a password change:
#   docker compose exec mlflow-db bash /mlflow-db/ensure-roles.sh
#
#   ensure-roles.sh           apply ensure-roles.sql and monitoring.sql (see there)
#   ensure-roles.sh --check   only validate the settings below; exit 1 with a message if wrong
#
# Settings (environment; VAR_FILE is read into VAR, as the postgres image does):
#   POSTGRES_USER        the superuser this step connects as (default postgres)
#   POSTGRES_PASSWORD    its password, only needed when local connections ask for one
#   POSTGRES_DB          the tracking store's database
#   MLFLOW_DB_USER       the role MLflow logs in as: owner of both databases, not a superuser
#   MLFLOW_DB_PASSWORD   its password (set at every run: that is how it is rotated)
#   MLFLOW_AUTH_DB       MLflow basic-auth's database
#   MONITORING_DB               the prediction log's database (default monitoring), owned by
#                               the superuser (see monitoring.sql)
#   MONITORING_DB_USER          the prediction API's role there (default monitoring_app)
#   MONITORING_DB_PASSWORD      its password (set at every run)
#   MONITORING_READER_USER      retraining's read-only role there (default monitoring_reader)
#   MONITORING_READER_PASSWORD  its password (set at every run)
#   PGHOST, PGPORT       the server's socket folder (default /var/run/postgresql) and port
#
# Exit status: 0 done; 1 refused (bad settings) or failed; 2 the server could not be reached
# or the connection was lost (worth a retry); 3 an SQL statement failed.
set -Eeuo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly here

log() { printf 'mlflow-db ensure: %s\n' "$*"; }
refuse() {
  printf 'mlflow-db ensure: refused: %s\n' "$*" >&2
  exit 1
}

# VAR from $VAR, else from the file named by $VAR_FILE (trailing newlines dropped).
file_env() {
  local var="$1" file_var="$1_FILE"
  if [ -n "${!var:-}" ] && [ -n "${!file_var:-}" ]; then
    refuse "both $var and $file_var are set (but are exclusive)"
  fi
  if [ -z "${!var:-}" ] && [ -n "${!file_var:-}" ]; then
    [ -r "${!file_var}" ] || refuse "$file_var: cannot read ${!file_var} as uid $(id -u)"
    printf -v "$var" '%s' "$(<"${!file_var}")"
  fi
}

# A name PostgreSQL keeps as written (longer names are silently truncated to 63 bytes).
check_name() {
  local var="$1" value="${!1:-}"
  [ -n "$value" ] || refuse "$var is not set"
  [ "$(printf '%s' "$value" | wc -c)" -le 63 ] || refuse "$var is longer than 63 bytes"
}

file_env POSTGRES_PASSWORD
for var in MLFLOW_DB_PASSWORD MONITORING_DB_PASSWORD MONITORING_READER_PASSWORD; do
  file_env "$var"
done
POSTGRES_USER="${POSTGRES_USER:-postgres}"
MONITORING_DB="${MONITORING_DB:-monitoring}"
MONITORING_DB_USER="${MONITORING_DB_USER:-monitoring_app}"
MONITORING_READER_USER="${MONITORING_READER_USER:-monitoring_reader}"
for var in POSTGRES_USER POSTGRES_DB MLFLOW_DB_USER MLFLOW_AUTH_DB \
  MONITORING_DB MONITORING_DB_USER MONITORING_READER_USER; do
  check_name "$var"
done
for var in MLFLOW_DB_PASSWORD MONITORING_DB_PASSWORD MONITORING_READER_PASSWORD; do
  [ -n "${!var:-}" ] || refuse "$var (or ${var}_FILE) is not set"
done
if [ "$MLFLOW_DB_USER" = "$POSTGRES_USER" ]; then
  refuse "MLFLOW_DB_USER and POSTGRES_USER are both \"$POSTGRES_USER\": MLflow must not log in" \
    "as the superuser; give MLFLOW_DB_USER another name (e.g. mlflow_app)"
fi
if [ "$POSTGRES_DB" = "$MLFLOW_AUTH_DB" ]; then
  refuse "POSTGRES_DB and MLFLOW_AUTH_DB are both \"$POSTGRES_DB\": the tracking and auth" \
    "stores need a database each (their migrations clash)"
fi
for db in "$POSTGRES_DB" "$MLFLOW_AUTH_DB"; do
  case "$db" in
    postgres | template0 | template1) refuse "\"$db\" is a system database; MLflow needs its own" ;;
  esac
done
# The prediction log: a database of its own, two roles of their own (each role must be able
# to do exactly what its service needs: sharing a name would merge two sets of rights).
case "$MONITORING_DB" in
  postgres | template0 | template1)
    refuse "\"$MONITORING_DB\" is a system database; the prediction log needs its own" ;;
  "$POSTGRES_DB" | "$MLFLOW_AUTH_DB")
    refuse "MONITORING_DB is \"$MONITORING_DB\", one of MLflow's databases; the prediction" \
      "log needs its own (e.g. monitoring)" ;;
esac
roles=(POSTGRES_USER MLFLOW_DB_USER MONITORING_DB_USER MONITORING_READER_USER)
for ((i = 0; i < ${#roles[@]}; i++)); do
  for ((j = i + 1; j < ${#roles[@]}; j++)); do
    if [ "${!roles[i]}" = "${!roles[j]}" ]; then
      refuse "${roles[i]} and ${roles[j]} are both \"${!roles[i]}\": each service needs a" \
        "role of its own"
    fi
  done
done

if [ "${1:-}" = --check ]; then
  exit 0
fi

export PGHOST="${PGHOST:-/var/run/postgresql}"
# Read by ensure-roles.sql with \getenv: the passwords never appear on a command line.
export MLFLOW_DB_PASSWORD MONITORING_DB_PASSWORD MONITORING_READER_PASSWORD
if [ -n "${POSTGRES_PASSWORD:-}" ]; then
  export PGPASSWORD="$POSTGRES_PASSWORD"
fi

log "ensuring that role \"$MLFLOW_DB_USER\" owns databases \"$POSTGRES_DB\" and \"$MLFLOW_AUTH_DB\"," \
  "and that database \"$MONITORING_DB\" holds the prediction log for roles" \
  "\"$MONITORING_DB_USER\" and \"$MONITORING_READER_USER\""
status=0
psql --no-psqlrc --quiet --set ON_ERROR_STOP=1 \
  --username "$POSTGRES_USER" --dbname postgres \
  --set app_role="$MLFLOW_DB_USER" \
  --set tracking_db="$POSTGRES_DB" \
  --set auth_db="$MLFLOW_AUTH_DB" \
  --set monitoring_db="$MONITORING_DB" \
  --set monitoring_app_role="$MONITORING_DB_USER" \
  --set monitoring_reader_role="$MONITORING_READER_USER" \
  --file "$here/ensure-roles.sql" </dev/null || status=$?
if [ "$status" -eq 2 ] && pg_isready --quiet --username "$POSTGRES_USER"; then
  # The server is up but turned the superuser away: not worth a retry.
  refuse "the server does not let \"$POSTGRES_USER\" in (see above). A volume keeps the" \
    "superuser it was created with (earlier versions of this stack named it mlflow): set" \
    "POSTGRES_USER to that name"
fi
if [ "$status" -ne 0 ]; then
  printf 'mlflow-db ensure: failed (psql exit status %s)\n' "$status" >&2
  exit "$status"
fi
log "done"
