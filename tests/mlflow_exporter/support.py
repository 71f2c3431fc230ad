"""Helpers shared by the exporter's tests and its benchmark: real runs, real processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Sequence
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.support.processes import auth_env, stop
from wine_mlops.healthcheck import wait_until_healthy

#: Model families used as run names when many runs are created.
FAMILIES: tuple[str, ...] = (
    "RandomForestClassifier",
    "KNeighborsClassifier",
    "SVC",
    "GradientBoostingClassifier",
    "LogisticRegression",
)


def insert_finished_runs(
    store_uri: str, experiment_id: str, count: int, names: Sequence[str] = FAMILIES
) -> None:
    """Adds ``count`` finished runs, cycling through ``names``, each with three metrics.

    The runs go into the tracking server's database through MLflow's own SQLAlchemy store
    and models, in one transaction: the REST API needs three calls per run (create, log,
    terminate), about a minute for 1,000 runs on this machine. The server then reads them
    like any other run. The newest run of each name has the highest start time.

    Args:
        store_uri: The server's backend store, e.g. ``sqlite:///.../mlflow.db``.
        experiment_id: The experiment that gets the runs.
        count: How many runs.
        names: Run names, used in turn.
    """
    from mlflow.store.tracking.dbmodels.models import (
        SqlLatestMetric,
        SqlMetric,
        SqlRun,
        SqlTag,
    )
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(store_uri, "/tmp/unused-artifacts")
    now = int(time.time() * 1000)
    with store.ManagedSessionMaker(read_only=False) as session:
        for index in range(count):
            run_id = uuid.uuid4().hex
            name = names[index % len(names)]
            start = now - (count - index) * 1000
            session.add(
                SqlRun(
                    run_uuid=run_id,
                    name=name,
                    experiment_id=int(experiment_id),
                    user_id="tests",
                    status="FINISHED",
                    start_time=start,
                    end_time=start + 500,
                    source_type="LOCAL",
                    source_name="",
                    entry_point_name="",
                    lifecycle_stage="active",
                    artifact_uri=f"mlflow-artifacts:/{experiment_id}/{run_id}/artifacts",
                )
            )
            session.add(SqlTag(key="mlflow.runName", value=name, run_uuid=run_id))
            for key, value in (
                ("accuracy", 0.8 + (index % 100) / 1000),
                ("f1_macro", 0.7 + (index % 100) / 1000),
                ("log_loss", 0.1 + (index % 10) / 100),
            ):
                for model in (SqlMetric, SqlLatestMetric):
                    session.add(
                        model(
                            key=key,
                            value=value,
                            timestamp=start,
                            step=0,
                            is_nan=False,
                            run_uuid=run_id,
                        )
                    )
    store.engine.dispose()


def get(url: str, timeout: float = 10.0) -> tuple[int, str]:
    """GETs a URL; returns the status and the body as text."""
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
        return response.status, response.read().decode()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Parses an exposition into {(sample name, labels): value}; fails on duplicate series."""
    found: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in found, f"duplicate series {key}"
            found[key] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float | None:
    """The value of one series in an exposition, or None when it is absent."""
    return samples(text).get((name, frozenset(labels.items())))


def promtool_check(text: str) -> str:
    """Runs ``promtool check metrics`` on an exposition; returns its complaints (none: "").

    Fails (never skips) when promtool is missing: it is part of the test environment
    (Debian package ``prometheus``).
    """
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: install Debian's 'prometheus' package"
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    return (result.stdout + result.stderr).strip() if result.returncode else ""


class ExporterProcess:
    """``python -m mlflow_exporter`` as a real process on 127.0.0.1."""

    def __init__(self, tracking_uri: str, port: int, log_path: Path, **env: str) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mlflow_exporter"],
            env={
                **{
                    k: v
                    for k, v in os.environ.items()
                    if not k.startswith(("EXPORTER_", "MLFLOW_"))
                },
                "MLFLOW_TRACKING_URI": tracking_uri,
                "MLFLOW_DISABLE_TELEMETRY": "true",
                # The test's own experiments: granted to the admin only (tests of the exporter's
                # read-only user are in tests/mlflow_server/test_auth.py).
                **auth_env("admin"),
                "EXPORTER_HOST": "127.0.0.1",
                "EXPORTER_PORT": str(port),
                **env,
            },
            stdout=subprocess.DEVNULL,
            stderr=open(log_path, "wb"),  # noqa: SIM115 (the child keeps it)
            start_new_session=True,
        )
        try:
            wait_until_healthy(f"{self.url}/healthz", timeout=60, process=self.process)
        except Exception:
            self.stop()
            raise RuntimeError(f"exporter did not start:\n{self.log()}") from None

    def log(self) -> str:
        """What the exporter logged so far."""
        return self.log_path.read_text(errors="replace")

    def metrics(self) -> str:
        """One scrape of ``/metrics``."""
        status, body = get(f"{self.url}/metrics")
        assert status == 200
        return body

    def wait_for(
        self,
        name: str,
        expected: float,
        labels: dict[str, str] | None = None,
        timeout: float = 30.0,
    ) -> str:
        """Scrapes until a series has the expected value; returns that scrape."""
        labels = labels or {}
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.metrics()
            if value(text, name, **labels) == expected:
                return text
            time.sleep(0.2)
        raise AssertionError(f"{name}{labels} never became {expected}; last scrape:\n{text}")

    def stop(self) -> None:
        """Stops the exporter (gunicorn master and worker)."""
        stop(self.process)
