"""Helpers around the MLflow client used by more than one service."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import requests

from wine_mlops.waiting import wait_until

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.tracking import MlflowClient

    from wine_mlops.settings import MlflowSettings

log = logging.getLogger(__name__)


class TrackingServerUnavailableError(RuntimeError):
    """The MLflow tracking server did not answer within the allowed attempts."""


class TrackingServerLoginError(TrackingServerUnavailableError):
    """The MLflow tracking server refused this service's login (HTTP 401)."""


def accepts_login(uri: str, login: tuple[str, str] | None) -> bool:
    """True unless the MLflow server at ``uri`` answers 401 to this login (None: anonymous).

    Args:
        uri: The tracking server, e.g. ``http://mlflow-server:5000``.
        login: A user name and password, sent with HTTP basic auth.
    """
    response = requests.get(
        f"{uri}/api/2.0/mlflow/experiments/search",
        params={"max_results": 1},
        auth=login,
        timeout=10,
    )
    return response.status_code != 401


def _check_login(uri: str, settings: MlflowSettings) -> None:
    """Raises :class:`TrackingServerLoginError` when the server refuses the login."""
    password = settings.tracking_password
    auth = (
        (settings.tracking_username, password.get_secret_value())
        if settings.tracking_username and password is not None
        else None
    )
    if not accepts_login(uri, auth):
        who = f"user {settings.tracking_username!r}" if auth else "an anonymous client"
        raise TrackingServerLoginError(
            f"MLflow at {uri} refused the login of {who} (HTTP 401): set MLFLOW_TRACKING_USERNAME"
            " and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_PASSWORD_FILE) to a valid login"
        )


def wait_for_tracking_server(settings: MlflowSettings) -> None:
    """Waits until the tracking server answers ``GET /health``, then checks the login.

    Retries with bounded backoff. A ``file:`` or database tracking URI needs no server and
    returns at once.

    Args:
        settings: The MLflow settings (URI, number of attempts, longest pause).

    Raises:
        TrackingServerUnavailableError: When every attempt failed.
        TrackingServerLoginError: When the server answers but refuses the login.
    """
    uri = settings.tracking_uri.rstrip("/")
    if not uri.startswith(("http://", "https://")):
        return
    last_error = "no answer yet"

    def answered() -> bool:
        nonlocal last_error
        try:
            response = requests.get(f"{uri}/health", timeout=5)
        except requests.RequestException as exc:
            last_error = f"{type(exc).__name__}: {exc}"
            return False
        last_error = f"HTTP {response.status_code}"
        return response.ok

    def log_retry(attempt: int, pause: float) -> None:
        log.warning(
            "MLflow at %s not reachable (attempt %d/%d: %s); retrying in %.1f s",
            uri,
            attempt,
            settings.connect_attempts,
            last_error,
            pause,
        )

    try:
        wait_until(
            answered,
            f"MLflow at {uri}",
            timeout=None,
            attempts=settings.connect_attempts,
            interval=0.5,
            max_interval=settings.connect_max_backoff_seconds,
            on_retry=log_retry,
        )
    except TimeoutError:
        raise TrackingServerUnavailableError(
            f"MLflow tracking server at {uri} is unreachable after "
            f"{settings.connect_attempts} attempts (last error: {last_error})"
        ) from None
    _check_login(uri, settings)


def version_by_alias(client: MlflowClient, model_name: str, alias: str) -> ModelVersion | None:
    """Returns the model version an alias points to, or None when the alias is not set.

    Args:
        client: An MLflow client.
        model_name: The registered model's name.
        alias: The alias, e.g. ``"champion"``.
    """
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(model_name, alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise
