"""Typed settings shared by the services, read once from environment variables."""

from __future__ import annotations

import logging
from typing import Annotated, Any, TypeVar

from pydantic import BeforeValidator, Field, ValidationError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from wine_mlops.logs import configure_logging

log = logging.getLogger(__name__)


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


#: Names read from one comma-separated variable: ``"a, b"`` gives ``("a", "b")``, blank ``()``.
CommaSeparated = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_split_commas)]


class ServiceSettings(BaseSettings):
    """What every service reads: ``LOG_LEVEL``. Unknown variables are ignored."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    log_level: str = Field(default="INFO", validation_alias="LOG_LEVEL")


class MlflowSettings(ServiceSettings):
    """Where MLflow is and which names the stack uses in it.

    Environment variables: ``MLFLOW_TRACKING_URI``, ``WINE_EXPERIMENT_NAME``,
    ``WINE_MODEL_NAME``, ``WINE_CHAMPION_ALIAS``, ``WINE_CHALLENGER_ALIAS``,
    ``WINE_MLFLOW_CONNECT_ATTEMPTS``, ``WINE_MLFLOW_CONNECT_MAX_BACKOFF``.
    """

    tracking_uri: str = Field(
        default="http://127.0.0.1:5000", validation_alias="MLFLOW_TRACKING_URI"
    )
    experiment_name: str = Field(default="wine-classifier", validation_alias="WINE_EXPERIMENT_NAME")
    model_name: str = Field(default="wine-classifier", validation_alias="WINE_MODEL_NAME")
    champion_alias: str = Field(default="champion", validation_alias="WINE_CHAMPION_ALIAS")
    challenger_alias: str = Field(default="challenger", validation_alias="WINE_CHALLENGER_ALIAS")
    connect_attempts: int = Field(default=8, ge=1, validation_alias="WINE_MLFLOW_CONNECT_ATTEMPTS")
    connect_max_backoff_seconds: float = Field(
        default=8.0, gt=0, validation_alias="WINE_MLFLOW_CONNECT_MAX_BACKOFF"
    )


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def load_settings(settings_type: type[SettingsT], **values: Any) -> SettingsT | None:
    """Reads a service's settings; an invalid one is logged, one line per problem.

    Args:
        settings_type: The settings class.
        **values: Values that take precedence over the environment (e.g. from a CLI).

    Returns:
        The settings, or None when they are invalid (the caller exits with code 2).
    """
    try:
        return settings_type(**values)
    except ValidationError as exc:
        configure_logging()
        for error in exc.errors():
            log.error("invalid setting %s: %s", ".".join(map(str, error["loc"])), error["msg"])
        return None
