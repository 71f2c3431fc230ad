"""Typed settings shared by the services, read once from environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class MlflowSettings(BaseSettings):
    """Where MLflow is and which names the stack uses in it.

    Environment variables: ``MLFLOW_TRACKING_URI``, ``WINE_EXPERIMENT_NAME``,
    ``WINE_MODEL_NAME``, ``WINE_CHAMPION_ALIAS``, ``WINE_CHALLENGER_ALIAS``.
    """

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

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
