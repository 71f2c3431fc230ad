#!/usr/bin/env bash
# Entrypoint of wine-mlops-airgap/postgres:15, mimicking the official postgres
# image for what the stack uses:
#   POSTGRES_PASSWORD  superuser password (required to initialise a new database)
#   POSTGRES_USER      superuser name (default: postgres)
#   POSTGRES_DB        database created on first start (default: $POSTGRES_USER)
#   PGDATA             data directory (default: /var/lib/postgresql/data)
# Each POSTGRES_* variable above may come from a file instead (Docker secrets):
# POSTGRES_PASSWORD_FILE=/run/secrets/... is read into POSTGRES_PASSWORD; setting
# both VAR and VAR_FILE is an error, as in the official image.
# On first start (no $PGDATA/PG_VERSION) it runs initdb (password read from a
# file, never on a command line), allows password (scram-sha-256) connections
# from any address, creates POSTGRES_DB, runs /docker-entrypoint-initdb.d/*.sh
# and *.sql; later starts skip all that. PostgreSQL then runs in the foreground
# as the postgres user (never as root), as PID 1 so `docker stop` reaches it.
set -Eeuo pipefail

# file_env VAR [DEFAULT]: VAR from $VAR, else from the file named by $VAR_FILE, else
# DEFAULT; exported, and VAR_FILE unset (the official image's semantics).
file_env() {
  local var="$1" file_var="$1_FILE" default="${2:-}" value
  if [ -n "${!var:-}" ] && [ -n "${!file_var:-}" ]; then
    echo "error: both $var and $file_var are set (but are exclusive)" >&2
    exit 1
  fi
  value="$default"
  if [ -n "${!var:-}" ]; then
    value="${!var}"
  elif [ -n "${!file_var:-}" ]; then
    value="$(<"${!file_var}")"
  fi
  export "$var=$value"
  unset "$file_var"
}

export PGDATA="${PGDATA:-/var/lib/postgresql/data}"

# `docker run IMAGE -c foo=bar` means `postgres -c foo=bar`, as in the official image.
if [ "$#" -eq 0 ] || [ "${1:0:1}" = '-' ]; then
  set -- postgres "$@"
fi

# Anything but the server (e.g. `bash`, `psql`) runs as is.
if [ "$1" != postgres ]; then
  exec "$@"
fi

# Read before dropping root: a secret file may be readable by root only.
file_env POSTGRES_PASSWORD
file_env POSTGRES_USER postgres
file_env POSTGRES_DB "$POSTGRES_USER"

# As root: make the data and socket directories the postgres user's (a bind
# mount may come root-owned), then re-run this script as postgres.
if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
  chmod 0700 "$PGDATA"
  chown postgres:postgres /var/run/postgresql
  chmod 3777 /var/run/postgresql
  export HOME=/var/lib/postgresql
  exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    cat >&2 <<MSG
error: the database is not initialised and POSTGRES_PASSWORD is not set.
       Set POSTGRES_PASSWORD to the password of the superuser "$POSTGRES_USER"
       (e.g. docker run -e POSTGRES_PASSWORD=... or "environment:" in compose).
MSG
    exit 1
  fi

  echo "docker-entrypoint: initialising the database in $PGDATA"
  pwfile="$(mktemp)"
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  initdb --username="$POSTGRES_USER" --pwfile="$pwfile" \
    --auth-local=trust --auth-host=scram-sha-256 \
    --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  rm -f "$pwfile"

  # Listen on every address; password (scram-sha-256) logins from any host.
  printf "\nlisten_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
  printf '\nhost all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"

  # A temporary server reachable only through the Unix socket, for set-up.
  pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
  psql=(psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet --username "$POSTGRES_USER")
  "${psql[@]}" --dbname postgres --set db="$POSTGRES_DB" <<'SQL'
SELECT format('CREATE DATABASE %I', :'db')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db')\gexec
SQL
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sh) echo "docker-entrypoint: running $f"; bash "$f" ;;
      *.sql) echo "docker-entrypoint: running $f"; "${psql[@]}" --dbname "$POSTGRES_DB" -f "$f" ;;
      *) if [ -e "$f" ]; then echo "docker-entrypoint: ignoring $f"; fi ;;
    esac
  done
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  echo "docker-entrypoint: initialisation done"
else
  echo "docker-entrypoint: database already initialised in $PGDATA, skipping initialisation"
fi

exec "$@"
