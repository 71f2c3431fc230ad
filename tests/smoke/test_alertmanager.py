"""Alertmanager: ready, running the stack's routes, and Prometheus sends it the alerts."""

from __future__ import annotations

import requests
import yaml

from tests.smoke.conftest import Deployment, eventually

#: Where the monitoring loop's alerts go (docs/monitoring.md).
WEBHOOK_URL = "http://model-training-webhook:8090/alerts"


def test_alertmanager_is_ready(deployment: Deployment) -> None:
    response = requests.get(f"{deployment.url('alertmanager')}/-/ready", timeout=10)
    assert response.ok, f"GET /-/ready answered HTTP {response.status_code}"


def test_alertmanager_sends_retraining_alerts_to_the_webhook(deployment: Deployment) -> None:
    """The loaded configuration (not only the file) routes action=retrain to the webhook."""
    response = requests.get(f"{deployment.url('alertmanager')}/api/v2/status", timeout=10)
    assert response.status_code == 200, response.text[:200]
    config = yaml.safe_load(response.json()["config"]["original"])
    (route,) = [r for r in config["route"]["routes"] if r["receiver"] == "retraining"]
    assert route["matchers"] == ['action="retrain"']
    (receiver,) = [r for r in config["receivers"] if r["name"] == "retraining"]
    (webhook,) = receiver["webhook_configs"]
    assert webhook["url"] == WEBHOOK_URL
    assert webhook["http_config"]["authorization"]["type"] == "Bearer"
    assert webhook["http_config"]["authorization"]["credentials_file"]
    assert config["route"]["receiver"] == "discard"


def test_prometheus_sends_alerts_to_alertmanager(
    deployment: Deployment, wait_seconds: float
) -> None:
    url = deployment.url("prometheus")
    deployment.url("alertmanager")  # skipped when the stack has none

    def discovered() -> None:
        response = requests.get(f"{url}/api/v1/alertmanagers", timeout=10)
        assert response.status_code == 200, response.text[:200]
        active = [a["url"] for a in response.json()["data"]["activeAlertmanagers"]]
        assert active, "Prometheus has no active Alertmanager"
        assert all(address.endswith("/api/v2/alerts") for address in active), active

    eventually(discovered, "Prometheus to discover Alertmanager", wait_seconds)
