"""Helpers of the exporter's tests: real runs in MLflow's store, expositions checked.

The exporter as a real process is started by :func:`devstack.start_exporter`.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Sequence

from devstack import metric_value, series
from model_training.candidates import DEFAULT_CANDIDATES

#: Model families used as run names when many runs are created: the trainer's default ones.
FAMILIES: tuple[str, ...] = DEFAULT_CANDIDATES


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


#: Parses an exposition into {(sample name, labels): value}; fails on duplicate series.
samples = series
#: The value of one series in an exposition, or None when it is absent.
value = metric_value


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
