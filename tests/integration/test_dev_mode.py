"""`make dev`: the stack's Python services as local processes on SQLite, without Docker."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from devstack import REPO, free_port

pytestmark = pytest.mark.integration


def test_dev_runner_trains_a_champion_into_local_state(tmp_path: Path) -> None:
    state = tmp_path / "dev-state"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "devstack",
            "--once",
            "--port",
            str(free_port()),
            "--api-port",
            str(free_port()),
            "--exporter-port",
            str(free_port()),
            "--ops-port",
            str(free_port()),
            "--state-dir",
            str(state),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={
            **os.environ,
            "WINE_CANDIDATES": "LogisticRegression,DummyClassifier",
            "WINE_CV_FOLDS": "2",
        },
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MLflow UI" in result.stderr
    assert "prediction form" in result.stderr
    client = MlflowClient(tracking_uri=f"sqlite:///{state / 'mlflow.db'}")
    champion = client.get_model_version_by_alias("wine-classifier", "champion")
    assert champion.tags["model_family"] == "LogisticRegression"
    assert any((state / "artifacts").rglob("*.png"))
    # The API's prediction log (feedback, live accuracy, drift) is an SQLite file there.
    with sqlite3.connect(state / "monitoring.db") as log:
        tables = {row[0] for row in log.execute("SELECT name FROM sqlite_master")}
    assert {"predictions", "feedback"} <= tables
    assert "prediction log" in result.stderr
    assert "stopping mlflow-server" in result.stderr
    assert "stopping prediction-api" in result.stderr
    assert "stopping mlflow-exporter" in result.stderr
