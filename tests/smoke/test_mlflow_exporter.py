"""The MLflow exporter: healthy, and republishing MLflow as Prometheus metrics."""

from __future__ import annotations

import requests

from tests.smoke.conftest import Deployment


def test_the_exporter_answers_its_health_check(deployment: Deployment) -> None:
    response = requests.get(f"{deployment.url('mlflow-exporter')}/healthz", timeout=10)
    assert response.ok, f"GET /healthz answered HTTP {response.status_code}"


def test_the_exporter_publishes_mlflow_metric_families(deployment: Deployment) -> None:
    response = requests.get(f"{deployment.url('mlflow-exporter')}/metrics", timeout=10)
    assert response.status_code == 200
    typed = [line for line in response.text.splitlines() if line.startswith("# TYPE mlflow_")]
    assert typed, "GET /metrics has no '# TYPE mlflow_…' line"
    freshness = "wine_exporter_last_refresh_success_timestamp_seconds"
    assert f"# TYPE {freshness} gauge" in response.text, f"GET /metrics has no {freshness}"
