"""Prometheus: ready, and every scrape target of the stack is up."""

from __future__ import annotations

import requests

from tests.smoke.conftest import Deployment, eventually


def test_prometheus_is_ready(deployment: Deployment) -> None:
    response = requests.get(f"{deployment.url('prometheus')}/-/ready", timeout=10)
    assert response.ok, f"GET /-/ready answered HTTP {response.status_code}"


def test_every_scrape_target_is_up(deployment: Deployment, wait_seconds: float) -> None:
    """Waits for the first scrapes after a deploy."""
    url = deployment.url("prometheus")

    def all_up() -> None:
        response = requests.get(f"{url}/api/v1/targets", params={"state": "active"}, timeout=10)
        assert response.status_code == 200, response.text[:200]
        targets = response.json()["data"]["activeTargets"]
        assert targets, "Prometheus has no active target"
        down = [
            f"{t['labels'].get('job')} {t.get('scrapeUrl')}: {t.get('health')} "
            f"{t.get('lastError', '')}".strip()
            for t in targets
            if t.get("health") != "up"
        ]
        assert not down, "targets not up: " + "; ".join(down)

    eventually(all_up, "every Prometheus target to be up", wait_seconds)
