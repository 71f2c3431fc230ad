"""The model monitoring loop in real containers, with shortened windows (tests/e2e/conftest.py):
wrong labels → live accuracy falls → WineLiveAccuracyLow fires → Alertmanager calls the
training service's webhook → a retraining session on the poisoned feedback runs, tagged with
the alert → the promotion gate keeps the better champion; shifted wines → drift rises →
WineFeatureDrift fires and reaches the receiver.

Runs after the monitoring module (MODULE_ORDER): it leaves alerts firing.
"""

from __future__ import annotations

from typing import Any

import mlflow
import pytest
import requests
from mlflow.tracking import MlflowClient

from devstack import metric_value
from model_training.data import load_dataset
from tests.e2e.conftest import ALERTMANAGER, API, PROMETHEUS, RETRAINING_WEBHOOK, Stack
from tests.monitoring.panels import instant_query, wait_for_alert
from wine_mlops.waiting import wait_until

pytestmark = pytest.mark.e2e

MODEL = "wine-classifier"
#: A retraining session of every candidate on 2 cores, with a margin.
SESSION_TIMEOUT = 600


@pytest.fixture(scope="module")
def client(stack: Stack) -> MlflowClient:
    mlflow.set_tracking_uri(stack.mlflow_url)
    return MlflowClient(stack.mlflow_url)


def _champion(client: MlflowClient) -> str:
    return client.get_model_version_by_alias(MODEL, "champion").version


def _gauge(promql: str) -> float | None:
    result = instant_query(PROMETHEUS, promql)
    return float(result[0]["value"][1]) if result else None


def _alertmanager_alerts(name: str) -> list[dict[str, Any]]:
    response = requests.get(
        f"{ALERTMANAGER}/api/v2/alerts", params={"filter": f'alertname="{name}"'}, timeout=10
    )
    response.raise_for_status()
    alerts: list[dict[str, Any]] = response.json()
    return alerts


def _sessions(alertname: str) -> float:
    """How often the receiver reacted to ``alertname`` (any result), from its /metrics."""
    text = requests.get(f"{RETRAINING_WEBHOOK}/metrics", timeout=10).text
    return sum(
        metric_value(text, "wine_retraining_sessions_total", alertname=alertname, result=result)
        or 0.0
        for result in ("started", "busy", "cooldown")
    )


def test_the_webhook_refuses_callers_without_the_token(stack: Stack) -> None:
    alert = {"status": "firing", "labels": {"alertname": "WineLiveAccuracyLow"}}
    payload = {"version": "4", "status": "firing", "receiver": "retraining", "alerts": [alert]}
    for headers in ({}, {"Authorization": "Bearer not-the-token"}):
        response = requests.post(
            f"{RETRAINING_WEBHOOK}/alerts", json=payload, headers=headers, timeout=10
        )
        assert response.status_code == 401, response.text
    assert _sessions("WineLiveAccuracyLow") == 0


def test_wrong_labels_fire_an_alert_that_retrains_and_the_gate_keeps_the_champion(
    stack: Stack, client: MlflowClient
) -> None:
    champion = _champion(client)
    wines = load_dataset().features.to_dict(orient="records")
    response = requests.post(f"{API}/predict/batch", json=wines, timeout=30)
    assert response.status_code == 200, response.text
    answers = response.json()
    # Every label wrong: the live accuracy of the served version drops to 0, and the
    # feedback, used for retraining, is poison.
    feedback = [
        {"prediction_id": a["prediction_id"], "true_class_id": (a["class_id"] + 1) % 3}
        for a in answers
    ]
    wait_until(  # the predictions reach the log within a flush interval
        lambda: (
            requests.post(f"{API}/feedback/batch", json=feedback, timeout=30).status_code == 200
        ),
        "feedback to be accepted",
        timeout=30,
        interval=1,
    )
    recorded = requests.post(f"{API}/feedback", json=feedback[0], timeout=10).json()
    assert recorded["recorded"] is False  # a repeat changes nothing
    assert recorded["correct"] is False

    wait_until(
        lambda: _gauge(f'wine_api_live_accuracy{{model_version="{champion}"}}') == 0.0,
        "Prometheus to see a live accuracy of 0",
        timeout=120,
        interval=3,
    )
    wait_for_alert(PROMETHEUS, "WineLiveAccuracyLow", timeout=180)
    wait_until(
        lambda: _alertmanager_alerts("WineLiveAccuracyLow"),
        "Alertmanager to hold WineLiveAccuracyLow",
        timeout=120,
        interval=3,
    )
    wait_until(
        lambda: _sessions("WineLiveAccuracyLow") >= 1,
        "the webhook to start a retraining session",
        timeout=180,
        interval=3,
    )
    experiment = client.get_experiment_by_name(MODEL)
    assert experiment is not None

    def finished_runs() -> list[Any]:
        runs = client.search_runs(
            [experiment.experiment_id],
            filter_string="tags.`wine.trigger.alert` = 'WineLiveAccuracyLow'",
            max_results=100,
        )
        done = [r for r in runs if r.info.status == "FINISHED"]
        return done if done and all(r.info.status != "RUNNING" for r in runs) else []

    runs = wait_until(
        finished_runs, "the retraining session's runs", timeout=SESSION_TIMEOUT, interval=5
    )
    assert all(r.data.tags.get("wine.trigger") == "alert" for r in runs)
    assert all(r.data.metrics["feedback_rows"] >= len(feedback) for r in runs)
    status = wait_until(
        lambda: (
            (s := requests.get(f"{RETRAINING_WEBHOOK}/status", timeout=10).json())["running"]
            is False
            and s
        ),
        "the session to end",
        timeout=SESSION_TIMEOUT,
        interval=2,
    )
    assert status["last_session"]["alertname"] == "WineLiveAccuracyLow"
    assert status["last_session"]["result"] == "succeeded"
    # Trained on poisoned labels, no candidate beats the champion on the held-out test split.
    assert _champion(client) == champion
    assert requests.get(f"{API}/model", timeout=10).json()["model_version"] == champion


def test_shifted_wines_raise_drift_and_fire_an_alert_that_reaches_the_receiver(
    stack: Stack,
) -> None:
    wines = load_dataset().features.to_dict(orient="records")
    shifted = [{**w, "proline": w["proline"] * 3, "magnesium": w["magnesium"] + 60} for w in wines]
    for _ in range(2):  # the whole drift window
        response = requests.post(f"{API}/predict/batch", json=shifted, timeout=30)
        assert response.status_code == 200, response.text
    wait_until(
        lambda: (_gauge('wine_api_feature_drift{feature="proline"}') or 0) > 0.25,
        "the proline drift to rise above 0.25",
        timeout=120,
        interval=3,
    )
    alert = wait_for_alert(PROMETHEUS, "WineFeatureDrift", timeout=180)
    assert alert["labels"].get("feature") in {"proline", "magnesium"}
    # Inside the cooldown of the session the first alert started: received, not retrained.
    wait_until(
        lambda: _sessions("WineFeatureDrift") >= 1,
        "the webhook to receive WineFeatureDrift",
        timeout=180,
        interval=3,
    )
