"""Settings come from the environment or, for secrets, from files (``VAR_FILE``)."""

from pathlib import Path

import pytest

from wine_mlops.settings import MlflowSettings, load_settings


def test_a_password_comes_from_the_file_its_file_variable_names(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret with spaces\n")
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "prediction-api")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD_FILE", str(secret))
    settings = MlflowSettings()
    assert settings.tracking_password is not None
    assert settings.tracking_password.get_secret_value() == "s3cret with spaces"
    assert "s3cret" not in repr(settings)


def test_use_credentials_hands_the_login_to_mlflows_client(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = tmp_path / "password"
    secret.write_text("from-a-file")
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "trainer")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD_FILE", str(secret))
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
