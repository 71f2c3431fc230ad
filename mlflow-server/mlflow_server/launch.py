"""Builds the ``mlflow server`` command from typed settings and replaces this process with it.

The backend store URI (it holds the database password) is passed through the
``MLFLOW_BACKEND_STORE_URI`` environment variable, never on the command line, so it does not
show in ``ps`` or in the container's command.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path
from urllib.parse import quote

from pydantic import Field, SecretStr, model_validator

from wine_mlops.logs import configure_logging
from wine_mlops.settings import ServiceSettings

log = logging.getLogger("mlflow_server")


class ServerSettings(ServiceSettings):
    """Settings of the tracking server.

    Either ``MLFLOW_BACKEND_STORE_URI`` is set (e.g. ``sqlite:///mlflow.db`` for ``make dev``),
    or the PostgreSQL variables ``POSTGRES_USER``, ``POSTGRES_PASSWORD``, ``POSTGRES_DB``
    (and optionally ``POSTGRES_HOST``, ``POSTGRES_PORT``) are.
    """

    backend_store_uri: SecretStr | None = Field(default=None, alias="MLFLOW_BACKEND_STORE_URI")
    postgres_host: str = Field(default="mlflow-db", alias="POSTGRES_HOST")
    postgres_port: int = Field(default=5432, alias="POSTGRES_PORT")
    postgres_user: str | None = Field(default=None, alias="POSTGRES_USER")
    postgres_password: SecretStr | None = Field(default=None, alias="POSTGRES_PASSWORD")
    postgres_db: str | None = Field(default=None, alias="POSTGRES_DB")
    artifacts_destination: str = Field(
        default="/mlflow/artifacts", alias="MLFLOW_ARTIFACTS_DESTINATION"
    )
    # Inside the container; compose publishes the port on 127.0.0.1 only.
    host: str = Field(default="0.0.0.0", alias="MLFLOW_HOST")  # noqa: S104
    port: int = Field(default=5000, alias="MLFLOW_PORT")
    allowed_hosts: str = Field(
        default="mlflow-server,mlflow-server:5000,localhost,localhost:*,127.0.0.1,127.0.0.1:*",
        alias="MLFLOW_SERVER_ALLOWED_HOSTS",
    )
    workers: int = Field(default=1, ge=1, alias="MLFLOW_WORKERS")
    prometheus_dir: Path | None = Field(
        default=Path("/tmp/mlflow-prometheus"),  # noqa: S108 (private to the container)
        alias="MLFLOW_PROMETHEUS_DIR",
    )

    @model_validator(mode="after")
    def _needs_a_store(self) -> ServerSettings:
        pg = (self.postgres_user, self.postgres_password, self.postgres_db)
        if self.backend_store_uri is None and not all(pg):
            raise ValueError(
                "set MLFLOW_BACKEND_STORE_URI, or POSTGRES_USER, POSTGRES_PASSWORD and POSTGRES_DB"
            )
        return self

    def store_uri(self) -> str:
        """The SQLAlchemy URI of the backend store (psycopg2 driver for PostgreSQL)."""
        if self.backend_store_uri is not None:
            return self.backend_store_uri.get_secret_value()
        if not (self.postgres_user and self.postgres_password and self.postgres_db):
            raise ValueError("PostgreSQL settings are incomplete")
        user = quote(self.postgres_user, safe="")
        password = quote(self.postgres_password.get_secret_value(), safe="")
        return (
            f"postgresql+psycopg2://{user}:{password}@{self.postgres_host}:{self.postgres_port}"
            f"/{quote(self.postgres_db, safe='')}"
        )

    def command(self) -> list[str]:
        """The ``mlflow server`` argument list (without secrets)."""
        args = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
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


def main() -> None:
    """Starts the tracking server in place of this process."""
    settings = ServerSettings()
    configure_logging(settings.log_level)
    if settings.prometheus_dir is not None:
        # Multi-process metric files of an earlier run would be summed into this one.
        shutil.rmtree(settings.prometheus_dir, ignore_errors=True)
        settings.prometheus_dir.mkdir(parents=True)
    env = dict(os.environ, MLFLOW_BACKEND_STORE_URI=settings.store_uri())
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    command = settings.command()
    log.info("starting: %s", " ".join(command))
    sys.stdout.flush()
    os.execvpe(command[0], command, env)  # noqa: S606 (fixed argv, no shell)
