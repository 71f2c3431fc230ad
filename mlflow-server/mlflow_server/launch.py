"""Runs the MLflow tracking server with basic-auth, provisions its users, serves ops endpoints.

The launcher is the container's main process (under ``init: true``) and supervises one child,
``mlflow server --app-name basic-auth``:

1. it writes the auth configuration (users database, ``default_permission =
   NO_PERMISSIONS``) to a private file and starts the server with the secrets in the child's
   environment only, never on a command line;
2. once ``/health`` answers, it creates or updates the stack's MLflow users and their grants
   (:mod:`mlflow_server.users`), idempotently;
3. it probes the two databases and the artifact folder every few seconds
   (:mod:`mlflow_server.stores`; MLflow's ``/health`` never touches its database);
4. it serves ``/readyz`` (200 once the users are in place and while both databases answer)
   and ``/metrics`` (MLflow's own request metrics, read from the multi-process files, and the
   stores' state) on an ops port that compose does not publish, so that Prometheus needs no
   MLflow login (MLflow answers its own ``/metrics`` to admins only);
5. it forwards SIGTERM/SIGINT to the server and exits with its exit code.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType
from urllib.parse import quote

from pydantic import Field, SecretStr, model_validator

from mlflow_server.ops import OpsServer, metrics_registry
from mlflow_server.stores import StoreProbe, local_artifact_folder
from mlflow_server.users import ServiceUser, provision
from wine_mlops.healthcheck import wait_until_healthy
from wine_mlops.logs import configure_logging
from wine_mlops.settings import ServiceSettings, load_settings, use_mlflow_http

log = logging.getLogger("mlflow_server")

#: Server environment variables that must never reach the ``mlflow server`` process.
_LAUNCHER_ONLY = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


class ServerSettings(ServiceSettings):
    """Settings of the tracking server.

    Stores: either ``MLFLOW_BACKEND_STORE_URI`` and ``MLFLOW_AUTH_DATABASE_URI`` are set (e.g.
    SQLite files for ``make dev``), or the PostgreSQL variables are: ``POSTGRES_HOST``,
    ``POSTGRES_PORT``, ``POSTGRES_DB`` (tracking store), ``MLFLOW_AUTH_DB`` (users and
    permissions), and the non-superuser owner of both, ``MLFLOW_DB_USER`` with
    ``MLFLOW_DB_PASSWORD``.

    Users: ``MLFLOW_ADMIN_USERNAME``, ``MLFLOW_ADMIN_PASSWORD``, ``MLFLOW_TRAINER_PASSWORD``,
    ``MLFLOW_PREDICTION_API_PASSWORD``, ``MLFLOW_EXPORTER_PASSWORD``; the UI's session key
    ``MLFLOW_FLASK_SECRET_KEY``. Each may come from a file (``VAR_FILE``).
    """

    backend_store_uri: SecretStr | None = Field(default=None, alias="MLFLOW_BACKEND_STORE_URI")
    auth_database_uri: SecretStr | None = Field(default=None, alias="MLFLOW_AUTH_DATABASE_URI")
    postgres_host: str = Field(default="mlflow-db", alias="POSTGRES_HOST")
    postgres_port: int = Field(default=5432, alias="POSTGRES_PORT")
    postgres_db: str = Field(default="mlflow", alias="POSTGRES_DB")
    auth_db: str = Field(default="mlflow_auth", alias="MLFLOW_AUTH_DB")
    db_user: str | None = Field(default=None, alias="MLFLOW_DB_USER")
    db_password: SecretStr | None = Field(default=None, alias="MLFLOW_DB_PASSWORD")
    artifacts_destination: str = Field(
        default="/mlflow/artifacts", alias="MLFLOW_ARTIFACTS_DESTINATION"
    )
    # Inside the container; compose publishes the port on 127.0.0.1 only.
    host: str = Field(default="0.0.0.0", alias="MLFLOW_HOST")  # noqa: S104
    port: int = Field(default=5000, alias="MLFLOW_PORT")
    ops_port: int = Field(default=5001, alias="MLFLOW_OPS_PORT")
    allowed_hosts: str = Field(
        default="mlflow-server,mlflow-server:5000,localhost,localhost:*,127.0.0.1,127.0.0.1:*",
        alias="MLFLOW_SERVER_ALLOWED_HOSTS",
    )
    workers: int = Field(default=1, ge=1, alias="MLFLOW_WORKERS")
    prometheus_dir: Path | None = Field(
        default=Path("/tmp/mlflow-prometheus"),  # noqa: S108 (private to the container)
        alias="MLFLOW_PROMETHEUS_DIR",
    )
    admin_username: str = Field(default="admin", min_length=1, alias="MLFLOW_ADMIN_USERNAME")
    admin_password: SecretStr = Field(alias="MLFLOW_ADMIN_PASSWORD")
    trainer_password: SecretStr = Field(alias="MLFLOW_TRAINER_PASSWORD")
    prediction_api_password: SecretStr = Field(alias="MLFLOW_PREDICTION_API_PASSWORD")
    exporter_password: SecretStr = Field(alias="MLFLOW_EXPORTER_PASSWORD")
    flask_secret_key: SecretStr = Field(alias="MLFLOW_FLASK_SECRET_KEY")
    experiment_name: str = Field(default="wine-classifier", alias="WINE_EXPERIMENT_NAME")
    model_name: str = Field(default="wine-classifier", alias="WINE_MODEL_NAME")
    # Seconds a checked login stays valid in each worker: the password hash (PBKDF2) then
    # costs once per user and period instead of once per request.
    auth_cache_seconds: int = Field(default=60, ge=0, alias="MLFLOW_AUTH_CACHE_SECONDS")

    @model_validator(mode="after")
    def _needs_stores(self) -> ServerSettings:
        sqlite_only = self.backend_store_uri is not None and self.auth_database_uri is not None
        if not sqlite_only and not (self.db_user and self.db_password):
            raise ValueError(
                "set MLFLOW_DB_USER and MLFLOW_DB_PASSWORD (PostgreSQL), or both "
                "MLFLOW_BACKEND_STORE_URI and MLFLOW_AUTH_DATABASE_URI"
            )
        for password in (
            self.admin_password,
            self.trainer_password,
            self.prediction_api_password,
            self.exporter_password,
            self.flask_secret_key,
        ):
            if len(password.get_secret_value()) < 12:
                raise ValueError("MLflow passwords and the secret key need 12 characters or more")
        return self

    def _postgres_uri(self, database: str) -> str:
        if not (self.db_user and self.db_password):
            raise ValueError("MLFLOW_DB_USER and MLFLOW_DB_PASSWORD are not set")
        user = quote(self.db_user, safe="")
        password = quote(self.db_password.get_secret_value(), safe="")
        return (
            f"postgresql+psycopg2://{user}:{password}@{self.postgres_host}:{self.postgres_port}"
            f"/{quote(database, safe='')}"
        )

    def store_uri(self) -> str:
        """The SQLAlchemy URI of the tracking store (psycopg2 driver for PostgreSQL)."""
        if self.backend_store_uri is not None:
            return self.backend_store_uri.get_secret_value()
        return self._postgres_uri(self.postgres_db)

    def auth_uri(self) -> str:
        """The SQLAlchemy URI of the auth store (its own database: MLflow needs that)."""
        if self.auth_database_uri is not None:
            return self.auth_database_uri.get_secret_value()
        return self._postgres_uri(self.auth_db)

    def tracking_uri(self) -> str:
        """Where the launcher reaches its own server."""
        return f"http://127.0.0.1:{self.port}"

    def service_users(self) -> list[ServiceUser]:
        """The stack's MLflow users and what each may do (see :mod:`mlflow_server.users`)."""
        return [
            ServiceUser("trainer", self.trainer_password, experiment="EDIT", model="MANAGE"),
            ServiceUser("prediction-api", self.prediction_api_password, "READ", "READ"),
            ServiceUser("mlflow-exporter", self.exporter_password, "READ", "READ", everything=True),
        ]

    def command(self) -> list[str]:
        """The ``mlflow server`` argument list (without secrets)."""
        args = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--app-name",
            "basic-auth",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
            "--serve-artifacts",
            "--artifacts-destination",
            self.artifacts_destination,
            "--allowed-hosts",
            self.allowed_hosts,
        ]
        if self.prometheus_dir is not None:
            args += ["--expose-prometheus", str(self.prometheus_dir)]
        return args

    def auth_config(self) -> str:
        """The ``basic_auth.ini`` text (it holds the auth database URI: write it privately)."""
        # configparser would read "%" as interpolation: a password may contain one.
        database_uri = self.auth_uri().replace("%", "%%")
        return (
            "[mlflow]\n"
            "default_permission = NO_PERMISSIONS\n"
            f"database_uri = {database_uri}\n"
            f"admin_username = {self.admin_username}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            "grant_default_workspace_access = false\n"
            f"auth_cache_ttl_seconds = {self.auth_cache_seconds}\n"
        )

    def server_environment(self, auth_config_path: Path) -> dict[str, str]:
        """The child's environment: the secrets it needs, nothing the launcher alone uses."""
        env = {k: v for k, v in os.environ.items() if k not in _LAUNCHER_ONLY}
        env = {k: v for k, v in env.items() if not k.endswith("_FILE")}
        env.update(
            MLFLOW_BACKEND_STORE_URI=self.store_uri(),
            MLFLOW_AUTH_CONFIG_PATH=str(auth_config_path),
            MLFLOW_AUTH_ADMIN_USERNAME=self.admin_username,
            # Used once, when the user store is empty; afterwards the admin rotates it.
            MLFLOW_AUTH_ADMIN_PASSWORD=self.admin_password.get_secret_value(),
            MLFLOW_FLASK_SERVER_SECRET_KEY=self.flask_secret_key.get_secret_value(),
            # The job runner starts ~10 processes and 1.7 GiB the stack never uses.
            MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
            MLFLOW_ALLOW_PICKLE_DESERIALIZATION="false",
        )
        env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        return env


class Supervisor:
    """Runs ``mlflow server`` as a child, forwards stop signals, provisions, serves ops."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.ready = threading.Event()
        self.child: subprocess.Popen[bytes] | None = None
        self.stores: StoreProbe | None = None

    def _forward(self, signum: int, _frame: FrameType | None) -> None:
        if self.child is not None and self.child.poll() is None:
            log.info("received %s; stopping the MLflow server", signal.Signals(signum).name)
            self.child.send_signal(signum)

    def _provision(self) -> None:
        settings = self.settings
        try:
            wait_until_healthy(f"{settings.tracking_uri()}/health", timeout=300, process=self.child)
            provision(
                settings.tracking_uri(),
                admin=(settings.admin_username, settings.admin_password),
                users=settings.service_users(),
                experiment_name=settings.experiment_name,
                model_name=settings.model_name,
            )
        except Exception:
            log.exception("provisioning the MLflow users failed; stopping the server")
            if self.child is not None:
                self.child.terminate()
            return
        self.ready.set()
        log.info("MLflow is ready on port %d (ops port %d)", settings.port, settings.ops_port)

    def run(self) -> int:
        """Starts everything and waits for the server to exit; returns its exit code."""
        settings = self.settings
        if settings.prometheus_dir is not None:
            # Multi-process metric files of an earlier run would be summed into this one.
            shutil.rmtree(settings.prometheus_dir, ignore_errors=True)
            settings.prometheus_dir.mkdir(parents=True)
        with tempfile.TemporaryDirectory(prefix="mlflow-auth-") as private:
            config = Path(private) / "basic_auth.ini"
            config.touch(mode=0o600)
            config.write_text(settings.auth_config())
            command = settings.command()
            log.info("starting: %s", " ".join(command))
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, self._forward)
            self.child = subprocess.Popen(  # noqa: S603 (fixed argv, no shell)
                command, env=settings.server_environment(config)
            )
            registry = metrics_registry(settings.prometheus_dir)
            artifacts = local_artifact_folder(settings.artifacts_destination)
            if artifacts is not None:  # a missing folder later means the volume is gone
                artifacts.mkdir(parents=True, exist_ok=True)
            self.stores = StoreProbe(
                {"tracking": settings.store_uri(), "auth": settings.auth_uri()},
                artifacts,
                registry,
            )
            self.stores.start()
            ops = OpsServer(settings.host, settings.ops_port, registry, self)
            ops.start()
            threading.Thread(target=self._provision, name="provision", daemon=True).start()
            try:
                return self.child.wait()
            finally:
                ops.stop()
                self.stores.stop()

    def is_ready(self) -> bool:
        """True once the users are provisioned, while the server runs and its databases answer."""
        return (
            self.ready.is_set()
            and self.child is not None
            and self.child.poll() is None
            and self.stores is not None
            and self.stores.databases_up()
        )


def main() -> int:
    """Reads the settings and runs the supervised server until it stops."""
    settings = load_settings(ServerSettings)
    if settings is None:
        return 2
    configure_logging(settings.log_level)
    # The launcher's own MLflow requests (provisioning) log in as the admin.
    os.environ["MLFLOW_TRACKING_USERNAME"] = settings.admin_username
    os.environ["MLFLOW_TRACKING_PASSWORD"] = settings.admin_password.get_secret_value()
    use_mlflow_http(max_retries=2)
    return Supervisor(settings).run()
