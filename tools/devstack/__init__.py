"""One way to start the stack's services as local processes: tests, ``make dev`` and ``bench/``.

PostgreSQL (:func:`postgres_server`), the MLflow server on SQLite or PostgreSQL
(:func:`start_mlflow_server`), the prediction API (:func:`start_api`), the exporter
(:func:`start_exporter`) and Prometheus (:func:`start_prometheus`), each waited for with
``wine_mlops.waiting.wait_until`` and returned as a handle with ``url``, ``process``,
``log()`` and ``stop()``. ``python -m devstack`` is ``make dev``.
"""

from devstack.postgres import PostgresServer, postgres_bindir, postgres_server
from devstack.services import (
    PASSWORDS,
    REPO,
    THROWAWAY,
    Exporter,
    Logins,
    MlflowServer,
    Service,
    StartupError,
    auth_env,
    free_port,
    metric_value,
    run_training,
    series,
    start_api,
    start_exporter,
    start_mlflow_server,
    start_prometheus,
    start_service,
    training_command,
    training_env,
)

__all__ = [
    "PASSWORDS",
    "REPO",
    "THROWAWAY",
    "Exporter",
    "Logins",
    "MlflowServer",
    "PostgresServer",
    "Service",
    "StartupError",
    "auth_env",
    "free_port",
    "metric_value",
    "postgres_bindir",
    "postgres_server",
    "run_training",
    "series",
    "start_api",
    "start_exporter",
    "start_mlflow_server",
    "start_prometheus",
    "start_service",
    "training_command",
    "training_env",
]
