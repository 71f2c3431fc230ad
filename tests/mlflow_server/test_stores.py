"""The launcher watches its stores: a database outage makes it unready, a full volume shows.

Real outages on a real launcher: the PostgreSQL server is shut down (as a stopped or
crashed database container would be) and started again; the artifact folder is a small
tmpfs that is filled up, then removed (as a lost volume would be).
"""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from devstack import MlflowServer, postgres_server, start_mlflow_server
from wine_mlops.waiting import wait_until

pytestmark = pytest.mark.integration


def _store_metrics(server: MlflowServer) -> dict[str, float]:
    """The launcher's store samples, e.g. ``{"up:tracking": 1.0, "free": 1e9, ...}``."""
    text = requests.get(f"{server.ops_url}/metrics", timeout=10).text
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "wine_mlflow_store_up":
                found[f"up:{sample.labels['store']}"] = sample.value
            elif sample.name == "wine_mlflow_artifact_store_free_bytes":
                found["free"] = sample.value
            elif sample.name == "wine_mlflow_artifact_store_size_bytes":
                found["size"] = sample.value
    return found


def _ready(server: MlflowServer) -> int:
    return requests.get(f"{server.ops_url}/readyz", timeout=10).status_code


def test_a_database_outage_makes_the_server_unready_until_it_is_back(tmp_path: Path) -> None:
    with postgres_server() as pg:
        server = start_mlflow_server(tmp_path, pg.env)
        try:
            assert _ready(server) == 200
            metrics = _store_metrics(server)
            assert metrics["up:tracking"] == metrics["up:auth"] == 1
            with pg.outage():
                wait_until(lambda: _ready(server) == 503, "/readyz answers 503", timeout=45)
                # MLflow's own health endpoint does not notice: why the launcher probes.
                assert requests.get(f"{server.url}/health", timeout=10).status_code == 200
                metrics = _store_metrics(server)
                assert metrics["up:tracking"] == metrics["up:auth"] == 0
            wait_until(lambda: _ready(server) == 200, "/readyz answers 200 again", timeout=45)
            assert _store_metrics(server)["up:tracking"] == 1
            assert "tracking store: unavailable" in server.log()
            assert "tracking store: available" in server.log()
        finally:
            server.stop()


def test_a_full_or_lost_artifact_volume_shows_on_the_metrics_without_unreadiness(
    tmp_path: Path,
) -> None:
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    # A 4 MiB volume (tests run as root, as CI does).
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(artifacts)], check=True)
    server = None
    try:
        server = start_mlflow_server(tmp_path, {"MLFLOW_BACKEND_STORE_URI": "sqlite:///m.db"})
        metrics = _store_metrics(server)
        assert metrics["up:artifacts"] == 1
        assert metrics["size"] == 4 * 1024 * 1024
        assert metrics["free"] > 0.9 * metrics["size"]

        filler = artifacts / "filler"
        with filler.open("wb") as out, contextlib.suppress(OSError):  # ENOSPC ends it
            while True:
                out.write(b"\0" * 65536)
        # The alert's condition: less than 1% free (prometheus/rules/alerts.yml).
        size = metrics["size"]
        wait_until(
            lambda: _store_metrics(server)["free"] < 0.01 * size, "the volume is full", timeout=45
        )
        assert _ready(server) == 200  # reading runs and models still works

        filler.unlink()
        subprocess.run(["umount", str(artifacts)], check=True)
        artifacts.rmdir()  # the volume is gone
        wait_until(
            lambda: _store_metrics(server)["up:artifacts"] == 0, "artifacts are down", timeout=45
        )
        assert "artifacts store: unavailable" in server.log()
        assert _ready(server) == 200
    finally:
        if server is not None:
            server.stop()
        subprocess.run(["umount", "-l", str(artifacts)], check=False, capture_output=True)
