"""Settings of the exporter, read once from environment variables."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from wine_mlops.settings import CommaSeparated, MlflowSettings


class ExporterSettings(MlflowSettings):
    """Everything the exporter needs.

    Environment variables (besides those of :class:`~wine_mlops.settings.MlflowSettings`):

    - ``EXPORTER_REFRESH_INTERVAL``: seconds between two reads of MLflow (default 15).
    - ``EXPORTER_EXPERIMENTS``: comma-separated experiment names to watch (default: all).
    - ``EXPORTER_HOST``, ``EXPORTER_PORT``: where gunicorn listens (default ``0.0.0.0:8000``).
    - ``EXPORTER_THREADS``: request threads of the single gunicorn worker (default 4).
    - ``EXPORTER_RUNS_PER_EXPERIMENT``: the newest runs read per experiment and refresh
      (default 200); run metrics and run counts come from them.
    - ``EXPORTER_MAX_RUNS_PER_REFRESH``: runs read per refresh over all experiments (default
      2000); with many experiments each reads fewer than ``EXPORTER_RUNS_PER_EXPERIMENT``.
    - ``EXPORTER_PAGE_SIZE``: runs per ``search_runs`` request (default 50).
    - ``EXPORTER_MIN_PAUSE``: seconds the refresher always waits after a refresh, even one
      that took longer than the interval (default 5).
    - ``EXPORTER_MLFLOW_DUTY``: the share of a refresh's time MLflow may spend on its runs
      searches (default 0.5): after each page the exporter waits as long as the page took,
      so other clients' requests are not queued behind a refresh. 1 means no waiting.
    - ``EXPORTER_MAX_EXPERIMENTS``, ``EXPORTER_MAX_RUN_NAMES``, ``EXPORTER_MAX_METRICS``,
      ``EXPORTER_MAX_MODELS``: the label-cardinality bounds (see the README).
    - ``EXPORTER_RUN_NAME_SUFFIX``: a regular expression cut from the end of run names before
      grouping, so that time-stamped names (``training-session-20250101-120000``) make one
      series, not one per session. Blank means this default, like every setting; a pattern
      that never matches, ``(?!)``, turns the cut off.
    - ``EXPORTER_MLFLOW_TIMEOUT``: seconds an MLflow request may take (default 10; an
      ``MLFLOW_HTTP_REQUEST_TIMEOUT`` in the environment takes precedence).
    - ``LOG_LEVEL``.
    """

    refresh_interval_seconds: float = Field(
        default=15.0, gt=0, validation_alias="EXPORTER_REFRESH_INTERVAL"
    )
    experiments: CommaSeparated = Field(default=(), validation_alias="EXPORTER_EXPERIMENTS")
    # In a container the service listens on every interface; compose publishes it on 127.0.0.1.
    host: str = Field(default="0.0.0.0", validation_alias="EXPORTER_HOST")  # noqa: S104
    port: int = Field(default=8000, ge=1, le=65535, validation_alias="EXPORTER_PORT")
    threads: int = Field(default=4, ge=1, le=64, validation_alias="EXPORTER_THREADS")
    page_size: int = Field(default=50, ge=1, le=50_000, validation_alias="EXPORTER_PAGE_SIZE")
    runs_per_experiment: int = Field(
        default=200, ge=1, validation_alias="EXPORTER_RUNS_PER_EXPERIMENT"
    )
    max_runs_per_refresh: int = Field(
        default=2000, ge=1, validation_alias="EXPORTER_MAX_RUNS_PER_REFRESH"
    )
    min_pause_seconds: float = Field(default=5.0, ge=0, validation_alias="EXPORTER_MIN_PAUSE")
    mlflow_duty: float = Field(default=0.5, gt=0, le=1, validation_alias="EXPORTER_MLFLOW_DUTY")
    max_experiments: int = Field(default=20, ge=1, validation_alias="EXPORTER_MAX_EXPERIMENTS")
    max_run_names: int = Field(default=50, ge=1, validation_alias="EXPORTER_MAX_RUN_NAMES")
    max_metrics: int = Field(default=50, ge=1, validation_alias="EXPORTER_MAX_METRICS")
    max_models: int = Field(default=20, ge=1, validation_alias="EXPORTER_MAX_MODELS")
    run_name_suffix: str = Field(
        default=r"[-_ ]\d{8}[-_T ]?\d{6}$", validation_alias="EXPORTER_RUN_NAME_SUFFIX"
    )
    mlflow_timeout_seconds: int = Field(
        default=10, ge=1, validation_alias="EXPORTER_MLFLOW_TIMEOUT"
    )

    @field_validator("run_name_suffix")
    @classmethod
    def _valid_pattern(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return value
