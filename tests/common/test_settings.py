"""Settings come from the environment or, for secrets, from files (``VAR_FILE``)."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from wine_mlops.settings import MlflowSettings, load_settings, use_mlflow_http


def _login_from_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, user: str, password: str
) -> None:
    """The login as compose hands it over: the user in the environment, the password in a file."""
    secret = tmp_path / "password"
    secret.write_text(password)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD_FILE", str(secret))


def test_a_password_comes_from_the_file_its_file_variable_names(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _login_from_file(monkeypatch, tmp_path, "prediction-api", "s3cret with spaces\n")
    settings = MlflowSettings()
    assert settings.tracking_password is not None
    assert settings.tracking_password.get_secret_value() == "s3cret with spaces"
    assert "s3cret" not in repr(settings)


def test_use_credentials_hands_the_login_to_mlflows_client(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _login_from_file(monkeypatch, tmp_path, "trainer", "from-a-file")
    MlflowSettings().use_credentials()
    from mlflow.utils.credentials import get_default_host_creds

    creds = get_default_host_creds("http://mlflow-server:5000")
    assert (creds.username, creds.password) == ("trainer", "from-a-file")


def test_an_unreadable_secret_file_is_a_clear_settings_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD_FILE", str(tmp_path / "missing"))
    assert load_settings(MlflowSettings) is None
    assert "MLFLOW_TRACKING_PASSWORD_FILE: cannot read" in capfd.readouterr().err


def test_use_mlflow_http_sets_what_mlflows_client_reads_and_keeps_the_operators(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mlflow.environment_variables import (
        MLFLOW_HTTP_REQUEST_MAX_RETRIES,
        MLFLOW_HTTP_REQUEST_TIMEOUT,
    )

    for name in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("MLFLOW_DISABLE_TELEMETRY", raising=False)
    in_effect = use_mlflow_http(max_retries=0, timeout_seconds=10)
    assert MLFLOW_HTTP_REQUEST_MAX_RETRIES.get() == 0
    assert MLFLOW_HTTP_REQUEST_TIMEOUT.get() == 10
    assert in_effect["MLFLOW_DISABLE_TELEMETRY"] == "true"

    # an operator's own values win over a service's defaults
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "5")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
    in_effect = use_mlflow_http(max_retries=1, timeout_seconds=20)
    assert MLFLOW_HTTP_REQUEST_MAX_RETRIES.get() == 5
    assert in_effect["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "60"


def test_use_mlflow_http_leaves_mlflows_defaults_when_a_service_has_none() -> None:
    environ: dict[str, str] = {}
    assert use_mlflow_http(environ=environ) == {"MLFLOW_DISABLE_TELEMETRY": "true"}
    assert environ == {"MLFLOW_DISABLE_TELEMETRY": "true"}


def test_use_tracking_uri_points_mlflows_fluent_api_at_the_settings_server(
    mlflow_process_uri: Callable[[str], None],
) -> None:
    import mlflow

    mlflow_process_uri("http://elsewhere:5000")
    server: dict[str, Any] = {"MLFLOW_TRACKING_URI": "http://mlflow-server:5000"}
    MlflowSettings(**server).use_tracking_uri()
    assert mlflow.get_tracking_uri() == "http://mlflow-server:5000"
