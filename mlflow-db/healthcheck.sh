#!/usr/bin/env bash
# Healthcheck of mlflow-db: healthy once the ensure step of this container start has succeeded
# (entrypoint.sh writes the marker) and PostgreSQL accepts connections.
set -eu
test -e /var/run/postgresql/mlflow-db.ensured
exec pg_isready --quiet --host /var/run/postgresql \
  --username "${MLFLOW_DB_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}"
