"""Settings of a training session, read once from the environment (and the CLI)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from model_training.candidates import CANDIDATES, DEFAULT_CANDIDATES
from wine_mlops.settings import MlflowSettings


class TrainingSettings(MlflowSettings):
    """Everything a training session needs.

    Environment variables (besides those of :class:`MlflowSettings`): ``WINE_DATA_PATH``,
    ``WINE_SEED``, ``WINE_TEST_SIZE``, ``WINE_CV_FOLDS``, ``WINE_CANDIDATES`` (comma-separated),
    ``GIT_COMMIT``, ``BUILD_ID``, ``BUILD_URL``, ``LOG_LEVEL``.
    """

    data_path: Path | None = Field(default=None, validation_alias="WINE_DATA_PATH")
    seed: int = Field(default=42, validation_alias="WINE_SEED")
    test_size: float = Field(default=0.25, gt=0.05, lt=0.8, validation_alias="WINE_TEST_SIZE")
    cv_folds: int = Field(default=5, ge=2, le=10, validation_alias="WINE_CV_FOLDS")
    candidates: Annotated[tuple[str, ...], NoDecode] = Field(
        default=DEFAULT_CANDIDATES, validation_alias="WINE_CANDIDATES"
    )
    git_commit: str | None = Field(default=None, validation_alias="GIT_COMMIT")
    build_id: str | None = Field(default=None, validation_alias="BUILD_ID")
    build_url: str | None = Field(default=None, validation_alias="BUILD_URL")
    log_level: str = Field(default="INFO", validation_alias="LOG_LEVEL")
    public_url: str | None = Field(default=None, validation_alias="WINE_MLFLOW_PUBLIC_URL")

    @field_validator(
        "data_path", "git_commit", "build_id", "build_url", "public_url", mode="before"
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("candidates", mode="before")
    @classmethod
    def _split_names(cls, value: object) -> object:
        if isinstance(value, str):  # "A,B"; blank means the default set
            value = tuple(n.strip() for n in value.split(",") if n.strip()) or DEFAULT_CANDIDATES
        return value

    @field_validator("candidates")
    @classmethod
    def _known_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [n for n in value if n not in CANDIDATES]
        if unknown or not value:
            raise ValueError(
                f"unknown or no candidates {list(unknown)}; choose from {', '.join(CANDIDATES)}"
            )
        return value
