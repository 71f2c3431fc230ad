"""Exporter settings from the environment."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mlflow_exporter.settings import ExporterSettings


def test_defaults_watch_every_experiment_every_15_seconds_on_port_8000(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in (
        "EXPORTER_EXPERIMENTS",
        "EXPORTER_PORT",
        "EXPORTER_REFRESH_INTERVAL",
        "EXPORTER_MIN_PAUSE",
        "EXPORTER_RUNS_PER_EXPERIMENT",
        "EXPORTER_MAX_RUNS_PER_REFRESH",
    ):
        monkeypatch.delenv(name, raising=False)
    settings = ExporterSettings()
    assert settings.experiments == ()
    assert settings.refresh_interval_seconds == 15
    assert settings.min_pause_seconds == 5
    assert (settings.runs_per_experiment, settings.max_runs_per_refresh) == (200, 2000)
    assert (settings.host, settings.port) == ("0.0.0.0", 8000)  # noqa: S104


def test_experiment_list_and_interval_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EXPORTER_EXPERIMENTS", " wine-classifier, other ,")
    monkeypatch.setenv("EXPORTER_REFRESH_INTERVAL", "2.5")
    monkeypatch.setenv("EXPORTER_RUNS_PER_EXPERIMENT", "50")
    monkeypatch.setenv("EXPORTER_MIN_PAUSE", "1.5")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow-server:5000")
    settings = ExporterSettings()
    assert settings.experiments == ("wine-classifier", "other")
    assert settings.refresh_interval_seconds == 2.5
    assert settings.runs_per_experiment == 50
    assert settings.min_pause_seconds == 1.5
    assert settings.tracking_uri == "http://mlflow-server:5000"


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("EXPORTER_REFRESH_INTERVAL", "0"),
        ("EXPORTER_RUN_NAME_SUFFIX", "("),
        ("EXPORTER_RUNS_PER_EXPERIMENT", "0"),
        ("EXPORTER_MIN_PAUSE", "-1"),
        ("EXPORTER_MLFLOW_DUTY", "0"),
    ],
)
def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, bad: str) -> None:
    monkeypatch.setenv(name, bad)
    with pytest.raises(ValidationError):
        ExporterSettings()
