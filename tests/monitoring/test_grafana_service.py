"""The grafana service of docker-compose.yaml: a patched 11.6 image, the admin password as a file.

Grafana cannot run on these machines (no registry, no package), so the service definition is
checked as written; tests/monitoring/test_live_prometheus.py checks what its panels query.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.support.processes import REPO

# 11.6.2 fixed CVE-2025-4123; 11.6.16 is the newest patch release of the 11.6 line. The
# images are published as grafana/grafana (grafana/grafana-oss no longer receives new ones).
NEWEST_11_6_PATCH = 16
IMAGE = re.compile(r"\$\{GRAFANA_IMAGE:-grafana/grafana:(\d+)\.(\d+)\.(\d+)\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "docker-compose.yaml").read_text())


def test_grafana_runs_the_newest_patch_release_of_the_11_6_line(compose: dict[str, Any]) -> None:
    image = IMAGE.fullmatch(compose["services"]["grafana"]["image"])
    assert image, compose["services"]["grafana"]["image"]
    major, minor, patch = (int(part) for part in image.groups())
    assert (major, minor) == (11, 6)
    assert patch >= NEWEST_11_6_PATCH


def test_the_image_check_refuses_the_vulnerable_release() -> None:
    image = IMAGE.fullmatch("${GRAFANA_IMAGE:-grafana/grafana:11.6.0}")
    assert image
    assert int(image.group(3)) < NEWEST_11_6_PATCH
    assert not IMAGE.fullmatch("${GRAFANA_IMAGE:-grafana/grafana-oss:11.6.16}")


def test_grafana_reads_its_admin_password_from_a_secret_file(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    environment = grafana["environment"]
    assert "GF_SECURITY_ADMIN_PASSWORD" not in environment
    assert environment["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/run/secrets/grafana-admin-password"
    assert "grafana-admin-password" in grafana["secrets"]
    assert compose["secrets"]["grafana-admin-password"] == {
        "file": "${SECRETS_DIR:-./.secrets}/grafana-admin-password"
    }
    # `make env` writes that file from this variable of .env.
    assert re.search(r"^GRAFANA_ADMIN_PASSWORD=$", (REPO / ".env.example").read_text(), re.M)
