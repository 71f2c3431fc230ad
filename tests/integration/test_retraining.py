"""Retraining on an alert: the receiver as a real process, real training sessions behind it.

A real MLflow server (SQLite), a SQLite prediction log filled with labelled rows, the
training job as users and the receiver run it (``python -m model_training`` and
``python -m model_training.webhook``), one quick candidate and two CV folds.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pytest
import requests
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from devstack import (
    MlflowServer,
    Service,
    free_port,
    metric_value,
    run_training,
    start_mlflow_server,
    start_service,
    training_env,
)
from model_training.data import load_dataset
from tests.support.prediction_log import fill_log

pytestmark = pytest.mark.integration

TOKEN = "retraining-token-for-the-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CANDIDATE = "LogisticRegression"
#: A guard against a hang only: a session of one candidate takes seconds.
SESSION_TIMEOUT = 300


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    workdir = tmp_path_factory.mktemp("mlflow-retraining")
    started = start_mlflow_server(
        workdir, {"MLFLOW_BACKEND_STORE_URI": f"sqlite:///{workdir / 'mlflow.db'}"}
    )
    yield started
    started.stop()


@pytest.fixture
def client(server: MlflowServer) -> MlflowClient:
    mlflow.set_tracking_uri(server.url)
    return MlflowClient(server.url)


@pytest.fixture
def names() -> dict[str, str]:
    """An experiment and a registered model of the test's own."""
    suffix = uuid.uuid4().hex[:8]
    return {"WINE_EXPERIMENT_NAME": f"retrain-{suffix}", "WINE_MODEL_NAME": f"retrain-{suffix}"}


def wines(label: str = "true", copies: int = 1) -> list[tuple[list[float], int]]:
    """Every wine of the data set, with its true class or (``wrong``) another one."""
    data = load_dataset()
    rows = []
    for features, target in zip(data.features.to_numpy().tolist(), data.target, strict=True):
        true_class = int(target) if label == "true" else (int(target) + 1) % 3
        rows.extend([(features, true_class)] * copies)
    return rows


def session_runs(client: MlflowClient, experiment_name: str) -> list[Run]:
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return []
    return client.search_runs([experiment.experiment_id], max_results=100)


def champion(client: MlflowClient, model: str) -> str:
    return client.get_model_version_by_alias(model, "champion").version


# --- the training job with --with-feedback ------------------------------------------------


def test_feedback_rows_join_training_and_the_runs_name_the_alert(
    server: MlflowServer, client: MlflowClient, names: dict[str, str], tmp_path: Path
) -> None:
    log_url = f"sqlite:///{tmp_path / 'monitoring.db'}"
    fill_log(log_url, wines("true")[:60])
    result = run_training(
        server.url,
        "--with-feedback",
        "--triggered-by",
        "WineFeatureDrift",
        candidates=CANDIDATE,
        WINE_MONITORING_DB_URL=log_url,
        **names,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "feedback: 60 labelled production row(s)" in result.stderr
    # 178 wines, 133 for training: 60 more join them; the 45 test rows stay
    assert "(193 rows now); the 45 test rows stay the data set's own" in result.stderr

    runs = session_runs(client, names["WINE_EXPERIMENT_NAME"])
    assert len(runs) == 2  # the session and its one candidate
    for run in runs:
        assert run.data.tags["wine.trigger"] == "alert"
        assert run.data.tags["wine.trigger.alert"] == "WineFeatureDrift"
        assert run.data.metrics["feedback_rows"] == 60
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert parent.data.params["feedback_source"] == log_url
    assert parent.inputs is not None
    contexts = {
        tag.value
        for dataset_input in parent.inputs.dataset_inputs
        for tag in dataset_input.tags
        if tag.key == "mlflow.data.context"
    }
    assert contexts == {"training", "feedback"}
    version = client.get_model_version(names["WINE_MODEL_NAME"], "1")
    assert "plus 60 labelled production row(s) in its training split" in (version.description or "")


def test_a_session_without_feedback_is_tagged_manual_and_logs_no_feedback_rows(
    server: MlflowServer, client: MlflowClient, names: dict[str, str]
) -> None:
    result = run_training(server.url, candidates=CANDIDATE, **names)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = session_runs(client, names["WINE_EXPERIMENT_NAME"])
    assert {r.data.tags["wine.trigger"] for r in runs} == {"manual"}
    assert all("feedback_rows" not in r.data.metrics for r in runs)


def _refused(
    server: MlflowServer, client: MlflowClient, names: dict[str, str], **env: str
) -> subprocess.CompletedProcess[str]:
    result = run_training(server.url, "--with-feedback", candidates=CANDIDATE, **names, **env)
    assert session_runs(client, names["WINE_EXPERIMENT_NAME"]) == []  # nothing logged
    return result


def test_without_a_prediction_log_or_labels_nothing_is_trained(
    server: MlflowServer, client: MlflowClient, names: dict[str, str], tmp_path: Path
) -> None:
    unset = _refused(server, client, names)
    assert unset.returncode == 2
    assert "--with-feedback needs the prediction log: set WINE_MONITORING_DB_URL" in unset.stderr

    empty = _refused(server, client, names, WINE_MONITORING_DB_URL=f"sqlite:///{tmp_path}/e.db")
    assert empty.returncode == 2
    assert "no labelled production rows in the prediction log" in empty.stderr
    assert "nothing was logged to MLflow" in empty.stderr

    secret = tmp_path / "monitoring-reader-password"
    secret.write_text("reader-secret-password\n")
    down = _refused(
        server,
        client,
        names,
        WINE_MONITORING_DB_URL=f"postgresql+psycopg2://monitoring_reader@127.0.0.1:{free_port()}/monitoring",
        WINE_MONITORING_DB_PASSWORD_FILE=str(secret),
    )
    assert down.returncode == 3
    assert "the prediction log at postgresql+psycopg2://monitoring_reader@127.0.0.1" in down.stderr
    assert "cannot be reached" in down.stderr
    assert "reader-secret-password" not in down.stderr + down.stdout


# --- the receiver -------------------------------------------------------------------------


def start_receiver(
    server: MlflowServer,
    tmp_path: Path,
    log_url: str,
    names: dict[str, str],
    cooldown: str,
    **env: str,
) -> Service:
    """``python -m model_training.webhook`` on a free port, its token from a secret file."""
    token_file = tmp_path / "retraining-webhook-token"
    token_file.write_text(f"{TOKEN}\n")
    port = free_port()
    environment = training_env(
        server.url,
        WINE_RETRAIN_WEBHOOK_TOKEN_FILE=str(token_file),
        WINE_RETRAIN_WEBHOOK_HOST="127.0.0.1",
        WINE_RETRAIN_WEBHOOK_PORT=str(port),
        WINE_RETRAIN_COOLDOWN_SECONDS=cooldown,
        WINE_MONITORING_DB_URL=log_url,
        WINE_CANDIDATES=CANDIDATE,
        WINE_CV_FOLDS="2",
        **names,
        **env,
    )
    environment.pop("WINE_RETRAIN_WEBHOOK_TOKEN", None)
    return start_service(
        "retraining-webhook",
        [sys.executable, "-m", "model_training.webhook"],
        f"http://127.0.0.1:{port}",
        "/healthz",
        environment,
        tmp_path / "webhook.log",
    )


def alert(name: str, status: str = "firing") -> dict[str, Any]:
    """Alertmanager's notification (version 4) of one alert."""
    labels = {"alertname": name, "severity": "warning"}
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{name}"}}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "retraining",
        "groupLabels": {"alertname": name},
        "commonLabels": labels,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": [
            {
                "status": status,
                "labels": labels,
                "annotations": {"summary": name},
                "startsAt": "2026-11-28T00:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph",
                "fingerprint": "0123456789abcdef",
            }
        ],
    }


def post(receiver: Service, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    return requests.post(
        f"{receiver.url}/alerts",
        json=body,
        headers=AUTH if headers is None else headers,
        timeout=10,
    )


def sessions(receiver: Service, alertname: str, result: str) -> float | None:
    text = requests.get(f"{receiver.url}/metrics", timeout=10).text
    return metric_value(text, "wine_retraining_sessions_total", alertname=alertname, result=result)


def test_an_alert_retrains_on_poisoned_feedback_and_the_better_champion_stays(
    server: MlflowServer, client: MlflowClient, names: dict[str, str], tmp_path: Path
) -> None:
    # a champion trained on the clean data set
    first = run_training(server.url, candidates=CANDIDATE, **names)
    assert first.returncode == 0, first.stderr[-3000:]
    model = names["WINE_MODEL_NAME"]
    before = champion(client, model)
    # and a prediction log of wrong labels: every wine three times, each with another class
    log_url = f"sqlite:///{tmp_path / 'monitoring.db'}"
    poison = wines("wrong", copies=3)
    fill_log(log_url, poison)

    # no accuracy floor: the comparison with the champion alone must keep it
    receiver = start_receiver(
        server, tmp_path, log_url, names, cooldown="3600", WINE_MIN_ACCURACY="0"
    )
    try:
        for headers in ({}, {"Authorization": "Bearer not-the-token"}):
            refused = post(receiver, alert("WineLiveAccuracyLow"), headers)
            assert refused.status_code == 401
        ignored = post(receiver, alert("WineApiDown"))
        assert ignored.status_code == 200
        assert ignored.json()["status"] == "ignored"
        assert requests.get(f"{receiver.url}/status", timeout=10).json()["last_session"] is None

        started = post(receiver, alert("WineLiveAccuracyLow"))
        assert started.status_code == 202, started.text
        busy = post(receiver, alert("WineLiveAccuracyLow"))
        assert busy.status_code == 409

        def ended() -> dict[str, Any] | None:
            status: dict[str, Any] = requests.get(f"{receiver.url}/status", timeout=10).json()
            return None if status["running"] else status

        status = receiver.wait_until(ended, "the session to end", timeout=SESSION_TIMEOUT)
        assert status["last_session"]["alertname"] == "WineLiveAccuracyLow"
        assert status["last_session"]["exit_code"] == 0, receiver.tail()
        assert status["last_session"]["result"] == "succeeded"

        cooldown = post(receiver, alert("WineFeatureDrift"))
        assert cooldown.status_code == 429
        assert int(cooldown.headers["Retry-After"]) > 3000

        assert sessions(receiver, "WineLiveAccuracyLow", "started") == 1
        assert sessions(receiver, "WineLiveAccuracyLow", "busy") == 1
        assert sessions(receiver, "WineLiveAccuracyLow", "succeeded") == 1
        assert sessions(receiver, "WineFeatureDrift", "cooldown") == 1
    finally:
        receiver.stop()

    log = receiver.log()
    assert TOKEN not in log
    # the session's own output, prefixed, in the receiver's log
    assert "[retraining WineLiveAccuracyLow]" in log
    assert f"feedback: {len(poison)} labelled production row(s)" in log

    retrained = [
        r
        for r in session_runs(client, names["WINE_EXPERIMENT_NAME"])
        if r.data.tags.get("wine.trigger.alert") == "WineLiveAccuracyLow"
    ]
    assert len(retrained) == 2  # the session and its candidate
    assert all(r.data.tags["wine.trigger"] == "alert" for r in retrained)
    assert all(r.data.metrics["feedback_rows"] == len(poison) for r in retrained)
    candidate = next(r for r in retrained if "mlflow.parentRunId" in r.data.tags)
    # fitted mostly on wrong labels, the candidate fails the untouched test split …
    assert candidate.data.metrics["accuracy"] < 0.5
    # … so it is registered as challenger and the better champion stays
    assert champion(client, model) == before
    challenger = client.get_model_version_by_alias(model, "challenger")
    assert challenger.version != before
    assert challenger.tags["promotion"] == "challenger"
    assert f"is worse than champion v{before}" in challenger.tags["promotion_reason"]
    assert "on the same test set" in challenger.tags["promotion_reason"]


def test_sigterm_to_the_receiver_stops_its_session_and_it_exits_cleanly(
    server: MlflowServer, client: MlflowClient, names: dict[str, str], tmp_path: Path
) -> None:
    log_url = f"sqlite:///{tmp_path / 'monitoring.db'}"
    fill_log(log_url, wines("true")[:30])
    receiver = start_receiver(server, tmp_path, log_url, names, cooldown="0")
    try:
        assert post(receiver, alert("WineFeatureDrift")).status_code == 202
        experiment = names["WINE_EXPERIMENT_NAME"]
        receiver.wait_until(
            lambda: any(r.info.status == "RUNNING" for r in session_runs(client, experiment)),
            "the session's first run",
            timeout=SESSION_TIMEOUT,
        )
        receiver.process.send_signal(signal.SIGTERM)  # the receiver only, not its group
        assert receiver.process.wait(60) == 0
    finally:
        receiver.stop()
    log = receiver.log()
    assert "retraining session (pid" in log
    assert "gets SIGTERM" in log
    assert "failed with exit code 143" in log
    runs = session_runs(client, names["WINE_EXPERIMENT_NAME"])
    assert runs
    assert {r.info.status for r in runs} == {"KILLED"}
    # stopped before it registered anything: no version at all
    model = names["WINE_MODEL_NAME"]
    assert client.search_model_versions(f"name = '{model}'") == []
