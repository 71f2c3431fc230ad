"""Settings of a training session, read once from the environment (and the CLI)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from model_training.candidates import DEFAULT_CANDIDATES, check_names
from wine_mlops.settings import CommaSeparated, MlflowSettings


class TrainingSettings(MlflowSettings):
    """Everything a training session needs.

    Environment variables (besides those of :class:`MlflowSettings`): ``WINE_DATA_PATH``,
    ``WINE_SEED``, ``WINE_TEST_SIZE``, ``WINE_CV_FOLDS``, ``WINE_CANDIDATES`` (comma-separated),
    ``GIT_COMMIT``, ``BUILD_ID``, ``BUILD_URL``, ``LOG_LEVEL``,
    ``WINE_PROMOTION_LOCK_LEASE_SECONDS`` (after how long another session may break a lock
    left by a session that died) and ``WINE_PROMOTION_LOCK_WAIT_SECONDS`` (how long to wait
    for the lock; longer than the lease, so that a dead session's lock is broken in time).

    Training with feedback (``--with-feedback``) reads the prediction log:
    ``WINE_MONITORING_DB_URL`` (a SQLAlchemy URL; in the stack the ``monitoring_reader`` role,
    which may only read), ``WINE_MONITORING_DB_PASSWORD_FILE`` (the file holding that role's
    password) and ``WINE_FEEDBACK_MAX_ROWS`` (at most this many rows, the most recently
    labelled first; default 10000).
    """

    data_path: Path | None = Field(default=None, validation_alias="WINE_DATA_PATH")
    seed: int = Field(default=42, validation_alias="WINE_SEED")
    test_size: float = Field(default=0.25, gt=0.05, lt=0.8, validation_alias="WINE_TEST_SIZE")
    cv_folds: int = Field(default=5, ge=2, le=10, validation_alias="WINE_CV_FOLDS")
    candidates: CommaSeparated = Field(
        default=DEFAULT_CANDIDATES, validation_alias="WINE_CANDIDATES"
    )
    git_commit: str | None = Field(default=None, validation_alias="GIT_COMMIT")
    build_id: str | None = Field(default=None, validation_alias="BUILD_ID")
    build_url: str | None = Field(default=None, validation_alias="BUILD_URL")
    public_url: str | None = Field(default=None, validation_alias="WINE_MLFLOW_PUBLIC_URL")
    lock_lease_seconds: float = Field(
        default=300.0, ge=1, validation_alias="WINE_PROMOTION_LOCK_LEASE_SECONDS"
    )
    lock_wait_seconds: float = Field(
        default=600.0, ge=0, validation_alias="WINE_PROMOTION_LOCK_WAIT_SECONDS"
    )
    monitoring_db_url: str | None = Field(default=None, validation_alias="WINE_MONITORING_DB_URL")
    monitoring_db_password_file: Path | None = Field(
        default=None, validation_alias="WINE_MONITORING_DB_PASSWORD_FILE"
    )
    feedback_max_rows: int = Field(
        default=10_000, ge=1, le=1_000_000, validation_alias="WINE_FEEDBACK_MAX_ROWS"
    )

    @field_validator("candidates")
    @classmethod
    def _known_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return check_names(value) if value else DEFAULT_CANDIDATES  # blank: the default set
