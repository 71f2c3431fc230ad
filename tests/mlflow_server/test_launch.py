"""The server launcher builds a safe command and a correct database URI."""

import pytest
from pydantic import ValidationError
from sqlalchemy.engine import make_url

from mlflow_server.launch import ServerSettings


def test_postgres_uri_escapes_the_password_and_keeps_it_off_the_command(monkeypatch) -> None:
    password = "p@ss:w/rd%?"
    for key, value in {
        "POSTGRES_USER": "mlflow",
        "POSTGRES_PASSWORD": password,
        "POSTGRES_DB": "mlflow",
    }.items():
        monkeypatch.setenv(key, value)
    settings = ServerSettings()
    url = make_url(settings.store_uri())
    assert url.drivername == "postgresql+psycopg2"
    assert (url.host, url.port, url.password) == ("mlflow-db", 5432, password)
    assert password not in " ".join(settings.command())
    assert password not in repr(settings)


def test_missing_store_settings_fail_with_a_clear_message(monkeypatch) -> None:
    for key in ("MLFLOW_BACKEND_STORE_URI", "POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(ValidationError, match="POSTGRES_PASSWORD"):
        ServerSettings()


def test_command_serves_artifacts_and_metrics_with_one_worker(monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_BACKEND_STORE_URI", "sqlite:///x.db")
    command = ServerSettings().command()
    assert "--serve-artifacts" in command
    assert command[command.index("--workers") + 1] == "1"
    assert "--expose-prometheus" in command
    hosts = command[command.index("--allowed-hosts") + 1].split(",")
    assert {"mlflow-server:5000", "localhost:*", "127.0.0.1:*"} <= set(hosts)
