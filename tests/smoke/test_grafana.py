"""Grafana: healthy, with its database (skipped where the stack has no Grafana)."""

from __future__ import annotations

import requests

from tests.smoke.conftest import Deployment


def test_grafana_is_healthy_with_its_database(deployment: Deployment) -> None:
    response = requests.get(f"{deployment.url('grafana')}/api/health", timeout=10)
    assert response.ok, f"GET /api/health answered HTTP {response.status_code}"
    assert response.json().get("database", "ok") == "ok", response.text
