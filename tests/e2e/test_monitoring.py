"""Monitoring in real containers: Prometheus scrapes every service, every dashboard panel's
query returns data, nothing fires in a healthy stack, and provoked faults fire alerts.

Runs last (see MODULE_ORDER): it stops services on purpose. Grafana itself cannot run on
machines without a registry, so its dashboards are proven query by query against Prometheus.
"""

from __future__ import annotations

import contextlib
import threading
import time

import pytest
import requests

from model_training.data import load_dataset
from tests.e2e.conftest import API, PROMETHEUS, Stack
from tests.monitoring.panels import (
    EMPTY_WHEN_HEALTHY,
    firing_alerts,
    queries_without_data,
    wait_for_alert,
    wait_for_targets_up,
)
from wine_mlops.waiting import wait_until

pytestmark = pytest.mark.e2e

SCRAPE_SECONDS = 15
#: rate() in the panels needs two scrapes of moving counters: 2 x 15 s, with a wide margin.
PANELS_TIMEOUT = 6 * SCRAPE_SECONDS


def _traffic(requests_count: int) -> None:
    """Valid predictions, one by one and in a batch, as clients would send."""
    rows = load_dataset().features.to_dict(orient="records")
    for row in rows[:requests_count]:
        assert requests.post(f"{API}/predict", json=row, timeout=10).status_code == 200
    assert requests.post(f"{API}/predict/batch", json=rows, timeout=30).status_code == 200


def test_every_target_is_up_and_no_alert_fires(stack: Stack) -> None:
    wait_for_targets_up(PROMETHEUS, timeout=120)
    assert firing_alerts(PROMETHEUS) == []


def test_every_dashboard_panel_returns_data(stack: Stack) -> None:
    """Clients keep sending wines until every panel shows data (rate() needs two scrapes)."""
    problems: list[str] = []

    def every_panel_has_data() -> bool:
        _traffic(5)  # counters exist, then move between scrapes
        found = queries_without_data(PROMETHEUS)
        problems[:] = [str(p) for p in found if p.query.key not in EMPTY_WHEN_HEALTHY]
        return not problems

    with contextlib.suppress(TimeoutError):
        wait_until(every_panel_has_data, "data in every panel", timeout=PANELS_TIMEOUT, interval=3)
    assert problems == []


def test_provoked_faults_fire_alerts(stack: Stack) -> None:
    """Invalid requests fire the client-error alert; a stopped exporter fires target-down."""
    stop = threading.Event()

    def send_invalid_requests() -> None:
        while not stop.is_set():
            requests.post(f"{API}/predict", data="not json", timeout=5)  # 415
            requests.post(f"{API}/predict", json={"alcohol": -1}, timeout=5)  # 422
            time.sleep(0.5)

    sender = threading.Thread(target=send_invalid_requests, daemon=True)
    sender.start()
    stack.compose("stop", "mlflow-exporter")
    try:
        wait_for_alert(PROMETHEUS, "WineTargetDown", timeout=240, labels={"job": "mlflow-exporter"})
        wait_for_alert(PROMETHEUS, "WineApiHighClientErrorRatio", timeout=300)
    finally:
        stop.set()
        sender.join(10)
        stack.compose("up", "--detach", "--wait", "mlflow-exporter")
    names = {a["labels"]["alertname"] for a in firing_alerts(PROMETHEUS)}
    assert {"WineTargetDown", "WineApiHighClientErrorRatio"} <= names


def _health(stack: Stack, service: str) -> str:
    """The Docker health status of a service's container: healthy, unhealthy or starting."""
    return stack.inspect(service, "{{.State.Health.Status}}")


def test_a_database_outage_marks_mlflow_unhealthy_fires_an_alert_and_spares_the_api(
    stack: Stack,
) -> None:
    wine = load_dataset().features.iloc[0].to_dict()
    stack.compose("stop", "mlflow-db")
    try:
        wait_for_alert(
            PROMETHEUS, "MlflowTrackingStoreDown", timeout=240, labels={"store": "tracking"}
        )
        wait_until(  # the healthcheck: 6 failures, 10 s apart
            lambda: _health(stack, "mlflow-server") == "unhealthy",
            "mlflow-server to turn unhealthy without its database",
            timeout=120,
            interval=5,
        )
        response = requests.post(f"{API}/predict", json=wine, timeout=10)
        assert response.status_code == 200, response.text
    finally:
        stack.compose("start", "mlflow-db")
    # Not `up --wait`: it fails at once on a container still marked unhealthy, and
    # mlflow-server turns healthy again only at its next check after the database is back.
    wait_until(
        lambda: _health(stack, "mlflow-server") == "healthy",
        "mlflow-server to turn healthy again after the database",
        timeout=180,
        interval=5,
    )
