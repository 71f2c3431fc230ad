"""Alertmanager: the stack's configuration is valid, the monitoring loop's alerts (and only
they) reach the retraining webhook, and a real Alertmanager sends them there with the bearer
token from the secret file."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from devstack import Service, free_port, start_service
from tests.monitoring.alertmanager import (
    ALERTMANAGER_CONFIG,
    WebhookRecorder,
    alertmanager_config,
    start_alertmanager,
)
from tests.monitoring.conftest import PROMETHEUS_DIR

#: The alerts the monitoring loop answers with a training session (docs/monitoring.md).
RETRAIN_ALERTS = ("WineFeatureDrift", "WineLiveAccuracyLow")
WEBHOOK_URL = "http://model-training-webhook:8090/alerts"
TOKEN_FILE = "/run/secrets/retraining-webhook-token"


def _alert_rules() -> dict[str, dict[str, Any]]:
    return {
        rule["alert"]: rule
        for path in sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }


def _amtool(amtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [amtool, *args], capture_output=True, text=True, timeout=60, cwd=ALERTMANAGER_CONFIG.parent
    )


def _route(amtool: str, labels: dict[str, str]) -> str:
    """The receiver(s) Alertmanager picks for an alert with ``labels``, by amtool."""
    pairs = [f"{key}={value}" for key, value in labels.items()]
    result = _amtool(amtool, "config", "routes", "test", "--config.file=alertmanager.yml", *pairs)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


def test_the_configuration_is_valid(amtool: str) -> None:
    result = _amtool(amtool, "check-config", "alertmanager.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    assert " - 2 receivers" in result.stdout


def test_a_broken_configuration_is_rejected(amtool: str, tmp_path: Path) -> None:
    """The check above would notice a mistake: a route to an undefined receiver fails."""
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    config["route"]["routes"][0]["receiver"] = "retrain"  # a typo
    (tmp_path / "broken.yml").write_text(yaml.safe_dump(config))
    result = _amtool(amtool, "check-config", str(tmp_path / "broken.yml"))
    assert result.returncode != 0
    assert 'undefined receiver "retrain"' in result.stdout + result.stderr


@pytest.mark.parametrize("alert", RETRAIN_ALERTS)
def test_the_loop_alerts_as_the_rules_label_them_reach_the_retraining_webhook(
    amtool: str, alert: str
) -> None:
    rule = _alert_rules()[alert]
    labels = {"alertname": alert, **rule["labels"]}
    assert labels["action"] == "retrain"
    assert _route(amtool, {**labels, "feature": "proline", "model_version": "4"}) == "retraining"


def test_every_other_alert_goes_nowhere(amtool: str) -> None:
    others = {name: rule for name, rule in _alert_rules().items() if name not in RETRAIN_ALERTS}
    assert "WineChampionAccuracyBelowFloor" in others
    for name, rule in others.items():
        assert "action" not in rule["labels"], name
        assert _route(amtool, {"alertname": name, **rule["labels"]}) == "discard", name
    assert _route(amtool, {"alertname": "WineFeatureDrift", "severity": "warning"}) == "discard"
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    discard = next(r for r in config["receivers"] if r["name"] == "discard")
    assert discard == {"name": "discard"}  # no integration: it sends nothing


def test_the_webhook_sends_firing_alerts_with_the_token_from_the_secret_file() -> None:
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    (retraining,) = (r for r in config["receivers"] if r["name"] == "retraining")
    (webhook,) = retraining["webhook_configs"]
    assert webhook["url"] == WEBHOOK_URL
    assert webhook["send_resolved"] is False
    assert 13 <= webhook["max_alerts"] <= 100  # every feature's drift alert fits in one call
    assert webhook["http_config"]["authorization"] == {
        "type": "Bearer",
        "credentials_file": TOKEN_FILE,
    }
    route = config["route"]
    assert route["group_by"] == ["alertname"]
    (retrain_route,) = route["routes"]
    assert retrain_route["receiver"] == "retraining"
    assert retrain_route["group_by"] == ["alertname"]


# A real Alertmanager ----------------------------------------------------------------------


@dataclass
class Running:
    """A real Alertmanager with the stack's routes, and the webhook it sends to."""

    manager: Service
    webhook: WebhookRecorder
    token: str

    def post_alerts(self, *alerts: dict[str, str]) -> None:
        """Posts firing alerts (their labels) as Prometheus does."""
        now = datetime.now(UTC).isoformat()
        body = [{"labels": labels, "annotations": {}, "startsAt": now} for labels in alerts]
        response = requests.post(f"{self.manager.url}/api/v2/alerts", json=body, timeout=10)
        assert response.status_code == 200, response.text

    def receivers_of(self, alertname: str) -> set[str]:
        """The receivers Alertmanager assigned to the active alert ``alertname``."""
        found = requests.get(f"{self.manager.url}/api/v2/alerts", timeout=10).json()
        return {
            receiver["name"]
            for alert in found
            if alert["labels"]["alertname"] == alertname
            for receiver in alert["receivers"]
        }


@pytest.fixture(scope="module")
def running(
    alertmanager_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    workdir = tmp_path_factory.mktemp("alertmanager")
    token = "test-token-0123456789"
    token_file = workdir / "retraining-webhook-token"
    token_file.write_text(token + "\n")
    with WebhookRecorder() as webhook:
        config = alertmanager_config(workdir, webhook.url, token_file, wait="1s")
        manager = start_alertmanager(alertmanager_binary, config, workdir)
        try:
            yield Running(manager, webhook, token)
        finally:
            manager.stop()


def test_a_real_alertmanager_sends_a_drift_alert_to_the_webhook_with_the_bearer_token(
    running: Running,
) -> None:
    other = {"alertname": "WineTargetDown", "severity": "critical", "job": "mlflow-exporter"}
    drift = {
        "alertname": "WineFeatureDrift",
        "severity": "warning",
        "action": "retrain",
        "feature": "proline",
    }
    running.post_alerts(other, drift)
    (call,) = running.manager.wait_until(
        lambda: running.webhook.received[:1], "the webhook to receive the drift alert"
    )
    assert (call.method, call.path) == ("POST", "/alerts")
    assert call.headers["authorization"] == f"Bearer {running.token}"  # newline stripped
    assert call.body["receiver"] == "retraining"
    assert call.body["status"] == "firing"
    assert call.alertnames == ["WineFeatureDrift"]
    assert call.body["alerts"][0]["labels"]["feature"] == "proline"
    assert call.body["groupLabels"] == {"alertname": "WineFeatureDrift"}
    # the other alert is held by Alertmanager, assigned to the receiver that sends nothing
    assert running.receivers_of("WineTargetDown") == {"discard"}
    assert running.receivers_of("WineFeatureDrift") == {"retraining"}
    assert all("WineTargetDown" not in r.alertnames for r in running.webhook.received)


def test_accuracy_alerts_of_two_versions_arrive_in_one_notification(running: Running) -> None:
    low = {"alertname": "WineLiveAccuracyLow", "severity": "critical", "action": "retrain"}
    running.post_alerts({**low, "model_version": "4"}, {**low, "model_version": "5"})

    def accuracy_calls() -> list[Any]:
        calls = [r for r in running.webhook.received if "WineLiveAccuracyLow" in r.alertnames]
        return calls if calls and len(calls[-1].alertnames) == 2 else []

    calls = running.manager.wait_until(accuracy_calls, "one notification with both versions")
    assert calls[-1].alertnames == ["WineLiveAccuracyLow", "WineLiveAccuracyLow"]
    versions = {alert["labels"]["model_version"] for alert in calls[-1].body["alerts"]}
    assert versions == {"4", "5"}
    assert calls[-1].headers["authorization"] == f"Bearer {running.token}"


def _metric(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                return sample.value
    return None


def test_the_retraining_webhook_accepts_what_alertmanager_sends(
    alertmanager_binary: str, tmp_path: Path
) -> None:
    """The stack's Alertmanager and the real receiver (``python -m model_training.webhook``)
    read the token from the same secret file (with its newline): the drift alert starts a
    session. MLflow is unreachable here, so the session cannot train; it is stopped with
    the receiver."""
    token_file = tmp_path / "retraining-webhook-token"
    token_file.write_text("a-secret-token-of-the-stack\n")
    port = free_port()
    receiver = start_service(
        "model-training-webhook",
        [sys.executable, "-m", "model_training.webhook"],
        f"http://127.0.0.1:{port}",
        "/healthz",
        {
            "PATH": os.environ["PATH"],
            "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}",  # nothing listens
            "WINE_RETRAIN_WEBHOOK_TOKEN_FILE": str(token_file),
            "WINE_RETRAIN_WEBHOOK_HOST": "127.0.0.1",
            "WINE_RETRAIN_WEBHOOK_PORT": str(port),
            "WINE_RETRAIN_STOP_SECONDS": "2",
            "WINE_MONITORING_DB_URL": f"sqlite:///{tmp_path / 'monitoring.db'}",
        },
        tmp_path / "webhook.log",
    )
    manager = None
    try:
        config = alertmanager_config(tmp_path, f"{receiver.url}/alerts", token_file, wait="1s")
        manager = start_alertmanager(alertmanager_binary, config, tmp_path)
        now = datetime.now(UTC).isoformat()
        drift = {"alertname": "WineFeatureDrift", "action": "retrain", "feature": "proline"}
        response = requests.post(
            f"{manager.url}/api/v2/alerts",
            json=[{"labels": {**drift, "severity": "warning"}, "startsAt": now}],
            timeout=10,
        )
        assert response.status_code == 200, response.text

        def started() -> float | None:
            text = requests.get(f"{receiver.url}/metrics", timeout=10).text
            value = _metric(
                text,
                "wine_retraining_sessions_total",
                alertname="WineFeatureDrift",
                result="started",
            )
            return value if value else None

        assert receiver.wait_until(started, "the receiver to start a session") == 1
        sent = requests.get(f"{manager.url}/metrics", timeout=10).text
        assert _metric(sent, "alertmanager_notifications_total", integration="webhook") == 1
        assert _metric(sent, "alertmanager_notifications_failed_total", integration="webhook") == 0
        assert "WineFeatureDrift" in receiver.log()
    finally:
        if manager is not None:
            manager.stop()
        receiver.stop()
