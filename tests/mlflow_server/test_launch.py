"""The server launcher builds a safe command, correct store URIs and the auth configuration."""

import configparser
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy.engine import make_url

from mlflow_server.launch import ServerSettings

USERS = {
    "MLFLOW_ADMIN_PASSWORD": "admin-password-1",
    "MLFLOW_TRAINER_PASSWORD": "trainer-password-1",
    "MLFLOW_PREDICTION_API_PASSWORD": "api-password-123",
    "MLFLOW_EXPORTER_PASSWORD": "exporter-password-1",
    "MLFLOW_FLASK_SECRET_KEY": "flask-secret-key-1",
}


def _settings() -> ServerSettings:
    """The settings from the environment (mypy cannot see that they come from there)."""
    return ServerSettings()  # type: ignore[call-arg]


@pytest.fixture(autouse=True)
def _users(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("MLFLOW_BACKEND_STORE_URI", "MLFLOW_AUTH_DATABASE_URI", "POSTGRES_USER"):
        monkeypatch.delenv(key, raising=False)
    for key, value in USERS.items():
        monkeypatch.setenv(key, value)


def _postgres(monkeypatch: pytest.MonkeyPatch, password: str) -> ServerSettings:
    monkeypatch.setenv("MLFLOW_DB_USER", "mlflow_app")
    monkeypatch.setenv("MLFLOW_DB_PASSWORD", password)
    return _settings()


def test_postgres_uris_escape_the_password_and_keep_it_off_the_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    password = "p@ss:w/rd%?"
    settings = _postgres(monkeypatch, password)
    tracking, auth = make_url(settings.store_uri()), make_url(settings.auth_uri())
    assert tracking.drivername == auth.drivername == "postgresql+psycopg2"
    assert (tracking.host, tracking.port, tracking.username) == ("mlflow-db", 5432, "mlflow_app")
    assert (tracking.password, auth.password) == (password, password)
    assert (tracking.database, auth.database) == ("mlflow", "mlflow_auth")
    assert password not in " ".join(settings.command())
    assert password not in repr(settings)


def test_auth_config_grants_nothing_by_default_and_keeps_a_percent_sign(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = _postgres(monkeypatch, "100%secret")
    parser = configparser.ConfigParser()  # MLflow reads the file with interpolation on
    parser.read_string(settings.auth_config())
    section = parser["mlflow"]
    assert section["default_permission"] == "NO_PERMISSIONS"
    assert make_url(section["database_uri"]).password == "100%secret"
    assert section["admin_username"] == "admin"


def test_secrets_reach_the_server_process_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "the-launchers-own-login")
    secret = tmp_path / "flask-key"
    secret.write_text("key-from-a-file-123\n")
    monkeypatch.delenv("MLFLOW_FLASK_SECRET_KEY")
    monkeypatch.setenv("MLFLOW_FLASK_SECRET_KEY_FILE", str(secret))
    settings = _postgres(monkeypatch, "db-password-123")
    env = settings.server_environment(tmp_path / "basic_auth.ini")
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"] == "key-from-a-file-123"
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"] == USERS["MLFLOW_ADMIN_PASSWORD"]
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert env["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] == "false"
    assert "MLFLOW_TRACKING_PASSWORD" not in env
    assert not [key for key in env if key.endswith("_FILE")]


def test_missing_store_settings_fail_with_a_clear_message() -> None:
    with pytest.raises(ValidationError, match="MLFLOW_DB_PASSWORD"):
        _settings()


def test_a_missing_user_password_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRAINER_PASSWORD")
    with pytest.raises(ValidationError, match="MLFLOW_TRAINER_PASSWORD"):
        _postgres(monkeypatch, "db-password-123")


def test_a_short_password_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_EXPORTER_PASSWORD", "short")
    with pytest.raises(ValidationError, match="12 characters"):
        _postgres(monkeypatch, "db-password-123")


def test_command_runs_basic_auth_serves_artifacts_and_metrics_with_one_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_BACKEND_STORE_URI", "sqlite:///x.db")
    monkeypatch.setenv("MLFLOW_AUTH_DATABASE_URI", "sqlite:///auth.db")
    command = _settings().command()
    assert command[command.index("--app-name") + 1] == "basic-auth"
    assert "--serve-artifacts" in command
    assert command[command.index("--workers") + 1] == "1"
    assert "--expose-prometheus" in command
    hosts = command[command.index("--allowed-hosts") + 1].split(",")
    assert {"mlflow-server:5000", "localhost:*", "127.0.0.1:*"} <= set(hosts)
