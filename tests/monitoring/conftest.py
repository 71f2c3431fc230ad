"""Fixtures of the monitoring tests: the Prometheus and Alertmanager binaries, which must be
installed (Debian: ``apt-get install prometheus prometheus-alertmanager``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO / "prometheus"


def _binary(name: str, package: str = "prometheus") -> str:
    found = shutil.which(name) or (
        f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").is_file() else None
    )
    if found is None:
        pytest.fail(
            f"`{name}` is not installed: the monitoring tests need it "
            f"(Debian: apt-get install {package}). They are never skipped.",
            pytrace=False,
        )
    return found


@pytest.fixture(scope="session")
def promtool() -> str:
    """Path of ``promtool``; fails the test with a clear message when it is missing."""
    return _binary("promtool")


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    """Path of the ``prometheus`` server; fails the test when it is missing."""
    return _binary("prometheus")


@pytest.fixture(scope="session")
def amtool() -> str:
    """Path of ``amtool`` (Alertmanager's command-line tool)."""
    return _binary("amtool", "prometheus-alertmanager")


@pytest.fixture(scope="session")
def alertmanager_binary() -> str:
    """Path of the Alertmanager server (``prometheus-alertmanager`` in Debian)."""
    return _binary("prometheus-alertmanager", "prometheus-alertmanager")
