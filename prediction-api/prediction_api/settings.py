"""Settings of the prediction API, read once from environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from wine_mlops.features import CLASS_NAMES
from wine_mlops.model_files import DEFAULT_MAX_BYTES
from wine_mlops.settings import CommaSeparated, MlflowSettings


class ApiSettings(MlflowSettings):
    """Everything the prediction API needs.

    Environment variables (besides those of :class:`MlflowSettings`): ``API_HOST``,
    ``API_PORT``, ``WINE_MODEL_ALIAS`` (default: the champion alias),
    ``WINE_CLASS_NAMES`` (comma-separated labels of class ids 0, 1, 2),
    ``WINE_WATCH_INTERVAL_SECONDS``, ``WINE_BATCH_LIMIT``, ``WINE_MAX_BODY_BYTES``,
    ``WINE_MODEL_MAX_BYTES`` (largest total size of a model version's files; a larger
    version is refused before download), ``WINE_API_WORKERS`` (worker processes, each
    with its own copy of the model and its own watcher), ``LOG_LEVEL``.

    The prediction log (docs/monitoring.md): ``WINE_MONITORING_DB_URL`` (SQLAlchemy URL of
    the monitoring database; unset: no log, feedback answers 503),
    ``WINE_MONITORING_DB_PASSWORD_FILE`` (secret file of its password),
    ``WINE_PREDICTION_LOG_QUEUE`` (most rows waiting per worker; more are dropped),
    ``WINE_PREDICTION_LOG_BATCH`` (rows per insert), ``WINE_PREDICTION_LOG_FLUSH_SECONDS``
    (longest wait of a row before it is written), ``WINE_PREDICTION_LOG_RETENTION_DAYS``.

    Live quality and drift, read from that log: ``WINE_MONITORING_REFRESH_SECONDS`` (how
    often each worker recomputes them), ``WINE_LIVE_ACCURACY_WINDOW`` (the last labelled
    predictions the live accuracy rests on), ``WINE_DRIFT_WINDOW`` (the last logged inputs
    the drift is measured on).
    """

    host: str = Field(default="0.0.0.0", validation_alias="API_HOST")  # noqa: S104 (container)
    port: int = Field(default=7654, ge=1, le=65535, validation_alias="API_PORT")
    workers: int = Field(default=1, ge=1, le=64, validation_alias="WINE_API_WORKERS")
    model_alias: str | None = Field(default=None, validation_alias="WINE_MODEL_ALIAS")
    class_names: CommaSeparated = Field(default=CLASS_NAMES, validation_alias="WINE_CLASS_NAMES")
    watch_interval_seconds: float = Field(
        default=30.0, gt=0, validation_alias="WINE_WATCH_INTERVAL_SECONDS"
    )
    batch_limit: int = Field(default=1000, ge=1, le=100_000, validation_alias="WINE_BATCH_LIMIT")
    max_body_bytes: int = Field(default=1_000_000, ge=1024, validation_alias="WINE_MAX_BODY_BYTES")
    model_max_bytes: int = Field(
        default=DEFAULT_MAX_BYTES, ge=1, validation_alias="WINE_MODEL_MAX_BYTES"
    )
    monitoring_db_url: str | None = Field(default=None, validation_alias="WINE_MONITORING_DB_URL")
    monitoring_db_password_file: Path | None = Field(
        default=None, validation_alias="WINE_MONITORING_DB_PASSWORD_FILE"
    )
    prediction_log_queue: int = Field(
        default=10_000, ge=1, validation_alias="WINE_PREDICTION_LOG_QUEUE"
    )
    prediction_log_batch: int = Field(
        default=500, ge=1, le=10_000, validation_alias="WINE_PREDICTION_LOG_BATCH"
    )
    prediction_log_flush_seconds: float = Field(
        default=1.0, gt=0, le=60, validation_alias="WINE_PREDICTION_LOG_FLUSH_SECONDS"
    )
    prediction_log_retention_days: float = Field(
        default=30.0, gt=0, validation_alias="WINE_PREDICTION_LOG_RETENTION_DAYS"
    )
    monitoring_refresh_seconds: float = Field(
        default=15.0, gt=0, le=3600, validation_alias="WINE_MONITORING_REFRESH_SECONDS"
    )
    live_accuracy_window: int = Field(
        default=200, ge=1, le=100_000, validation_alias="WINE_LIVE_ACCURACY_WINDOW"
    )
    drift_window: int = Field(default=500, ge=1, le=100_000, validation_alias="WINE_DRIFT_WINDOW")

    @field_validator("class_names")
    @classmethod
    def _distinct(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value) or not value:
            raise ValueError(f"class names must be distinct and not empty, got {list(value)}")
        return value

    @property
    def served_alias(self) -> str:
        """The alias whose model is served (the champion unless ``WINE_MODEL_ALIAS`` says)."""
        return self.model_alias or self.champion_alias
