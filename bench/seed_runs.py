"""Seeds many MLflow runs straight into a tracking server's PostgreSQL database.

Logging 50,000 runs through the REST API takes hours (several requests per run); this writes
the same rows the SQLAlchemy store writes for a training session (``runs``, ``tags``,
``params``, ``metrics``, ``latest_metrics``) with PostgreSQL's ``COPY``, about 10 s for
50,000 runs. Run it only after the server created its schema (it does on start-up); the
server then reads the runs like any other.

The mix imitates the training job (``model-training``): one parent run
``training-session-YYYYMMDD-HHMMSS`` per session with five nested runs, one per model
family, each with the job's params, tags and test metrics. One session in 25 failed (the
parent and the child being trained are FAILED, the later families never started), one in
100 was killed (KILLED), and the newest session is still RUNNING. Sessions are a minute
apart, the newest ending now.
"""

from __future__ import annotations

import contextlib
import io
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg2
import sqlalchemy as sa

from model_training.candidates import DEFAULT_CANDIDATES as FAMILIES
from model_training.evaluation import CANDIDATE_METRICS

#: Hyperparameters as ``get_params`` logs them (15, a typical estimator's count).
CHILD_PARAMS: dict[str, str] = {
    "C": "1.0",
    "class_weight": "None",
    "max_iter": "1000",
    "n_jobs": "None",
    "random_state": "42",
    "tol": "0.0001",
    "verbose": "0",
    "warm_start": "False",
    "max_depth": "None",
    "min_samples_leaf": "1",
    "min_samples_split": "2",
    "n_estimators": "100",
    "criterion": "gini",
    "bootstrap": "True",
    "preprocessing": "scaler",
}

SESSION_SECONDS = 60


@dataclass
class Seeded:
    """What :func:`seed_runs` wrote.

    Attributes:
        runs: Runs written (parents and children).
        by_status: Runs written by status.
        newest_finished: For each run name (the session suffix cut), the id, start time (ms)
            and metrics of its newest FINISHED run.
        oldest_start_ms: Start time of the oldest session (Unix ms): where an older batch ends.
    """

    runs: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    newest_finished: dict[str, tuple[str, int, dict[str, float]]] = field(default_factory=dict)
    oldest_start_ms: int = 0


def _rows(
    experiment_id: int, count: int, end_ms: int, newest_running: bool, seeded: Seeded
) -> Iterator[tuple[str, tuple[object, ...]]]:
    """Yields (table, row) for ``count`` runs, the newest session first."""
    digest = "3f1c2a9b"
    age = 0
    while seeded.runs < count:
        start = end_ms - (age + 1) * SESSION_SECONDS * 1000
        seeded.oldest_start_ms = start
        stamp = datetime.fromtimestamp(start / 1000, UTC).strftime("%Y%m%d-%H%M%S")
        parent_id = uuid.uuid4().hex
        if age == 0 and newest_running:
            parent_status, failing_child = "RUNNING", len(FAMILIES) - 1
        elif age % 25 == 7:
            parent_status, failing_child = "FAILED", age % len(FAMILIES)
        elif age % 100 == 42:
            parent_status, failing_child = "KILLED", age % len(FAMILIES)
        else:
            parent_status, failing_child = "FINISHED", len(FAMILIES)
        runs: list[tuple[str, str, str, int, str | None]] = [
            (parent_id, f"training-session-{stamp}", parent_status, start, None)
        ]
        for position, family in enumerate(FAMILIES[: failing_child + 1]):
            if position < failing_child:
                status = "FINISHED"
            elif parent_status == "RUNNING":
                status = "RUNNING"
            else:
                status = parent_status
            child_start = start + (position + 1) * 8000
            runs.append((uuid.uuid4().hex, family, status, child_start, parent_id))
        runs = runs[: count - seeded.runs]
        age += 1
        for run_id, name, status, run_start, parent in runs:
            end = None if status == "RUNNING" else run_start + 7000
            seeded.runs += 1
            seeded.by_status[status] = seeded.by_status.get(status, 0) + 1
            yield (
                "runs",
                (
                    run_id,
                    name,
                    "LOCAL",
                    "/app/model_training/__main__.py",
                    "",
                    "trainer",
                    status,
                    run_start,
                    end,
                    "",
                    "active",
                    f"mlflow-artifacts:/{experiment_id}/{run_id}/artifacts",
                    experiment_id,
                    None,
                ),
            )
            tags = {
                "mlflow.runName": name,
                "mlflow.user": "trainer",
                "mlflow.source.name": "/app/model_training/__main__.py",
                "mlflow.source.type": "LOCAL",
                "mlflow.source.git.commit": "1ba4009c0ffee",
                "dataset_digest": digest,
            }
            if parent is None:
                tags |= {
                    "session": "training",
                    "best_model": "SVC",
                    "registered_version": str(age),
                    "promotion": "challenger",
                    "promotion_reason": "candidate does not beat the champion",
                }
                params = {
                    "dataset_source": "sklearn.datasets.load_wine",
                    "dataset_digest": digest,
                    "dataset_rows": "178",
                    "seed": "42",
                    "test_size": "0.25",
                    "cv_folds": "5",
                    "candidates": ",".join(FAMILIES),
                }
            else:
                tags |= {"mlflow.parentRunId": parent, "model_family": name}
                params = CHILD_PARAMS
            for key, value in tags.items():
                yield "tags", (key, value, run_id)
            for key, value in params.items():
                yield "params", (key, value, run_id)
            if status == "FAILED" or (status == "RUNNING" and parent is not None):
                continue  # a candidate that failed or is being trained logged no metrics
            values = {
                key: round(0.85 + ((age * 7 + index * 13 + len(name)) % 150) / 1000, 6)
                for index, key in enumerate(CANDIDATE_METRICS)
            }
            metrics = values
            if parent is None:  # the session's best candidate and the champion it faced
                metrics = {f"{p}_{k}": v for k, v in values.items() for p in ("best", "champion")}
            for metric, number in metrics.items():
                yield "metrics", (metric, number, run_start + 6000, run_id, 0, False)
                yield "latest_metrics", (metric, number, run_start + 6000, 0, False, run_id)
            if status == "FINISHED":
                label = "training-session" if parent is None else name
                seeded.newest_finished.setdefault(label, (run_id, run_start, metrics))


_COLUMNS: dict[str, str] = {
    "runs": "run_uuid, name, source_type, source_name, entry_point_name, user_id, status, "
    "start_time, end_time, source_version, lifecycle_stage, artifact_uri, experiment_id, "
    "deleted_time",
    "tags": "key, value, run_uuid",
    "params": "key, value, run_uuid",
    "metrics": "key, value, timestamp, run_uuid, step, is_nan",
    "latest_metrics": "key, value, timestamp, step, is_nan, run_uuid",
}


def _copy_text(value: object) -> str:
    if value is None:
        return r"\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    text = str(value)
    assert not any(c in text for c in "\t\n\\"), text  # our own values
    return text


def seed_runs(
    database_url: str, experiment_id: str, runs: int, end_ms: int, *, newest_running: bool = True
) -> Seeded:
    """Writes ``runs`` runs into one experiment, sessions a minute apart ending at ``end_ms``.

    Args:
        database_url: The tracking store's SQLAlchemy URI (psycopg2).
        experiment_id: The experiment that gets the runs.
        runs: How many runs (the oldest session may lack its last children).
        end_ms: When the newest session ends (Unix ms); older sessions precede it.
        newest_running: The newest session is still RUNNING (False for an older batch).

    Returns:
        What was written.
    """
    seeded = Seeded()
    buffers = {table: io.StringIO() for table in _COLUMNS}
    for table, row in _rows(int(experiment_id), runs, end_ms, newest_running, seeded):
        buffers[table].write("\t".join(_copy_text(v) for v in row) + "\n")
    url = sa.engine.make_url(database_url)
    with (
        contextlib.closing(
            psycopg2.connect(
                host=url.host,
                port=url.port,
                dbname=url.database,
                user=url.username,
                password=url.password,
            )
        ) as connection,
        connection,  # one transaction: committed at the end, rolled back on an error
        connection.cursor() as cursor,
    ):
        for table, buffer in buffers.items():
            buffer.seek(0)
            cursor.copy_expert(f"COPY {table} ({_COLUMNS[table]}) FROM STDIN", buffer)
        cursor.execute(f"ANALYZE {', '.join(_COLUMNS)}")
    return seeded
