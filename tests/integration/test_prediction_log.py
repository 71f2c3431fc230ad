"""The prediction log on a real PostgreSQL cluster, set up by mlflow-db's ensure step.

A real MLflow server (SQLite), the real trainer, and ``python -m prediction_api`` with two
workers logging in as ``monitoring_app`` with a password file, as compose runs it. Every
answered wine lands in ``predictions`` with the serving version, its class and its features;
feedback round-trips, with 404, 409, 422 and repeats as documented. The database stopped, or
frozen (its processes SIGSTOPped), never fails a prediction nor slows it down beyond normal:
the lost rows are counted, and logging resumes by itself when the database is back.
"""

from __future__ import annotations

import os
import signal
import statistics
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from devstack import (
    MlflowServer,
    PostgresServer,
    Service,
    metric_value,
    postgres_server,
    run_training,
    start_api,
    start_mlflow_server,
)
from tests.prediction_api.browser import check_form
from wine_mlops.features import CLASS_NAMES, FEATURE_NAMES, load_wine_frame
from wine_mlops.monitoring_db import feedback, predictions
from wine_mlops.waiting import wait_until

pytestmark = pytest.mark.integration

NAMES = {"WINE_EXPERIMENT_NAME": "prediction-log", "WINE_MODEL_NAME": "prediction-log-model"}
#: How often the writers write (seconds): short, so that the test waits little.
FLUSH_SECONDS = 0.2
#: Rows a worker's queue holds: small, so that a frozen database fills it quickly.
QUEUE_ROWS = 300


@dataclass
class LoggedStack:
    pg: PostgresServer
    mlflow: MlflowServer
    api: Service
    superuser: sa.Engine  # the tests read the log as the superuser


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoggedStack]:
    workdir = tmp_path_factory.mktemp("prediction-log")
    with postgres_server() as pg:
        secret = pg.write_password_file(workdir / "monitoring-db-password")
        server = start_mlflow_server(
            workdir, {"MLFLOW_BACKEND_STORE_URI": f"sqlite:///{workdir / 'mlflow.db'}"}
        )
        api: Service | None = None
        superuser = sa.create_engine(
            pg.url(pg.monitoring_database, superuser=True), pool_pre_ping=True
        )
        try:
            training = run_training(server.url, candidates="LogisticRegression", **NAMES)
            assert training.returncode == 0, training.stderr[-3000:]
            api = start_api(
                server.url,
                workdir,
                workers=2,
                WINE_MODEL_NAME=NAMES["WINE_MODEL_NAME"],
                WINE_MONITORING_DB_URL=pg.monitoring_url(with_password=False),
                WINE_MONITORING_DB_PASSWORD_FILE=str(secret),
                WINE_PREDICTION_LOG_FLUSH_SECONDS=str(FLUSH_SECONDS),
                WINE_PREDICTION_LOG_QUEUE=str(QUEUE_ROWS),
            )
            yield LoggedStack(pg, server, api, superuser)
        finally:
            superuser.dispose()
            if api is not None:
                api.stop()
            server.stop()


def wines() -> list[dict[str, float]]:
    frame = load_wine_frame()
    return [
        {name: float(value) for name, value in zip(FEATURE_NAMES, row, strict=True)}
        for row in frame[list(FEATURE_NAMES)].itertuples(index=False)
    ]


def logged(stack: LoggedStack, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The logged rows among ``ids``."""
    query = sa.select(predictions).where(predictions.c.id.in_([uuid.UUID(i) for i in ids]))
    with stack.superuser.connect() as connection:
        rows = connection.execute(query).mappings().all()
    return {str(row["id"]): dict(row) for row in rows}


def labels(stack: LoggedStack) -> dict[str, int]:
    with stack.superuser.connect() as connection:
        rows = connection.execute(sa.select(feedback)).mappings().all()
    return {str(row["prediction_id"]): row["true_class_id"] for row in rows}


def metric(stack: LoggedStack, name: str, **labels: str) -> float:
    """One series of the API's ``/metrics`` (summed over the workers)."""
    text = httpx.get(f"{stack.api.url}/metrics", timeout=10).text
    return metric_value(text, name, **labels) or 0.0


def timed_prediction(client: httpx.Client, wine: dict[str, float]) -> float:
    """Seconds one ``POST /predict`` took; it must answer 200 with an id."""
    started = time.perf_counter()
    answer = client.post("/predict", json=wine)
    took = time.perf_counter() - started
    assert answer.status_code == 200, answer.text
    assert uuid.UUID(answer.json()["prediction_id"]).version == 4
    return took


def postgres_pids(pg: PostgresServer) -> list[int]:
    """The postmaster and every process it started (the backends of open connections)."""
    postmaster = int((pg.data_dir / "postmaster.pid").read_text().splitlines()[0])
    children = [
        int(entry)
        for entry in os.listdir("/proc")
        if entry.isdigit() and _parent(int(entry)) == postmaster
    ]
    return [postmaster, *children]


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def test_every_answered_wine_is_logged_with_version_class_and_features(
    stack: LoggedStack,
) -> None:
    sent = wines()
    with httpx.Client(base_url=stack.api.url, timeout=30) as client:
        one = client.post("/predict", json=sent[0]).json()
        batch = client.post("/predict/batch", json=sent).json()
    answers = [one, *batch]
    ids = [a["prediction_id"] for a in answers]
    assert len(set(ids)) == len(sent) + 1
    wait_until(lambda: len(logged(stack, ids)) == len(ids), "every answer logged", timeout=30)
    rows = logged(stack, ids)
    for answer, wine in zip(answers, [sent[0], *sent], strict=True):
        row = rows[answer["prediction_id"]]
        assert row["model_name"] == NAMES["WINE_MODEL_NAME"]
        assert row["model_version"] == answer["model_version"] == "1"
        assert row["class_id"] == answer["class_id"]
        assert row["features"] == [wine[name] for name in FEATURE_NAMES]
        assert row["probabilities"] == pytest.approx(list(answer["probabilities"].values()))
    assert metric(stack, "wine_api_prediction_log_rows_total") >= len(ids)


def test_feedback_round_trips_through_either_worker(stack: LoggedStack) -> None:
    sent = wines()
    url = stack.api.url
    # each request on a connection of its own, so that either worker may take it: a label
    # sent at once may name a row still waiting in the other worker's queue
    answers = [httpx.post(f"{url}/predict", json=wine, timeout=30).json() for wine in sent[:8]]
    results = [
        httpx.post(
            f"{url}/feedback",
            json={"prediction_id": a["prediction_id"], "true_class_id": a["class_id"]},
            timeout=30,
        )
        for a in answers
    ]
    with httpx.Client(base_url=stack.api.url, timeout=30) as client:
        assert [r.status_code for r in results] == [200] * 8, [r.text for r in results]
        assert all(r.json()["correct"] and r.json()["recorded"] for r in results)

        first = answers[0]
        again = {"prediction_id": first["prediction_id"], "true_class_id": first["class_id"]}
        repeat = client.post("/feedback", json=again)
        assert repeat.status_code == 200
        assert repeat.json()["recorded"] is False
        other = {**again, "true_class_id": (first["class_id"] + 1) % 3}
        assert client.post("/feedback", json=other).status_code == 409
        unknown = {"prediction_id": str(uuid.uuid4()), "true_class_id": 0}
        assert client.post("/feedback", json=unknown).status_code == 404
        invalid = client.post("/feedback", json={**again, "true_class_id": 7})
        assert invalid.status_code == 422
        assert invalid.headers["content-type"] == "application/problem+json"
        batch = [
            {"prediction_id": a["prediction_id"], "true_class_id": (a["class_id"] + 1) % 3}
            for a in (client.post("/predict", json=wine).json() for wine in sent[8:11])
        ]
        answer = client.post("/feedback/batch", json=batch)
        assert answer.status_code == 200, answer.text
        assert [r["correct"] for r in answer.json()] == [False] * 3

    stored = labels(stack)
    for a in answers:
        assert stored[a["prediction_id"]] == a["class_id"]
    for item in batch:
        assert stored[item["prediction_id"]] == item["true_class_id"]
    assert metric(stack, "wine_api_feedback_total", outcome="correct") == 8
    assert metric(stack, "wine_api_feedback_total", outcome="wrong") == 3


def test_the_form_sends_the_true_cultivar_and_shows_what_was_recorded(
    stack: LoggedStack, tmp_path: Path
) -> None:
    before = labels(stack)
    shot = tmp_path / "form-feedback.png"
    seen = check_form(stack.api.url, sample_class_id=2, screenshot=shot)
    assert seen.cultivar == CLASS_NAMES[2]
    assert seen.feedback_buttons == list(CLASS_NAMES)
    assert seen.feedback_message == (
        f"Thank you: recorded {CLASS_NAMES[2]}, the prediction was right."
    )
    new = {pid: label for pid, label in labels(stack).items() if pid not in before}
    assert list(new.values()) == [2]
    assert seen.external_requests == []
    assert shot.read_bytes().startswith(b"\x89PNG")


def test_a_stopped_database_never_fails_a_prediction_and_the_log_resumes(
    stack: LoggedStack,
) -> None:
    sent = wines()
    with httpx.Client(base_url=stack.api.url, timeout=30) as client:
        normal = [timed_prediction(client, sent[i % len(sent)]) for i in range(20)]
        lost_before = metric(stack, "wine_api_prediction_log_dropped_total", reason="db_error")
        with stack.pg.outage():
            during = [timed_prediction(client, sent[i % len(sent)]) for i in range(60)]
            time.sleep(FLUSH_SECONDS * 3)  # the writers try, and fail
            during += [timed_prediction(client, sent[i % len(sent)]) for i in range(20)]
            wait_until(
                lambda: (
                    metric(stack, "wine_api_prediction_log_dropped_total", reason="db_error")
                    > lost_before
                ),
                "rows lost to the stopped database counted",
                timeout=30,
            )
            down = client.post(
                "/feedback", json={"prediction_id": str(uuid.uuid4()), "true_class_id": 0}
            )
            assert down.status_code == 503
            assert "monitoring database" in down.json()["detail"]
        after = [client.post("/predict", json=sent[i]).json()["prediction_id"] for i in range(4)]
    # no prediction waited for the database: as quick as before, give or take scheduling
    assert not_slower(normal, during), (normal, during)
    wait_until(
        lambda: len(logged(stack, after)) == len(after),
        "logging resumed after the restart",
        timeout=60,
    )


def timed_batch(client: httpx.Client, batch: list[dict[str, float]]) -> float:
    """Seconds one ``POST /predict/batch`` took; it must answer every wine."""
    started = time.perf_counter()
    answer = client.post("/predict/batch", json=batch)
    took = time.perf_counter() - started
    assert answer.status_code == 200, answer.text
    assert len(answer.json()) == len(batch)
    return took


def not_slower(normal: list[float], during: list[float]) -> bool:
    """Whether no request of ``during`` took much longer than the usual ones (generous
    margins: two shared cores, several processes)."""
    return max(during) < max(20 * statistics.median(normal), 3 * max(normal), 0.5)


def test_a_frozen_database_never_delays_a_prediction_and_the_log_resumes(
    stack: LoggedStack,
) -> None:
    sent = wines()
    pids = postgres_pids(stack.pg)
    with httpx.Client(base_url=stack.api.url, timeout=30) as client:
        normal = [timed_prediction(client, sent[i % len(sent)]) for i in range(20)]
        normal_batches = [timed_batch(client, sent) for _ in range(3)]
        full_before = metric(stack, "wine_api_prediction_log_dropped_total", reason="queue_full")
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            during = [timed_prediction(client, sent[i % len(sent)]) for i in range(20)]
            # more rows than a queue holds, while the writer waits on the frozen database
            during_batches = [timed_batch(client, sent) for _ in range(4)]
            during += [timed_prediction(client, sent[i % len(sent)]) for i in range(20)]
            full_after = metric(stack, "wine_api_prediction_log_dropped_total", reason="queue_full")
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)
        assert full_after - full_before >= 4 * len(sent) + 20 - 2 * QUEUE_ROWS
        wait_until(
            lambda: metric(stack, "wine_api_prediction_log_queued_rows") == 0,
            "the queues written after the database thawed",
            timeout=60,
        )
        after = [client.post("/predict", json=sent[i]).json()["prediction_id"] for i in range(4)]
    assert not_slower(normal, during), (normal, during)
    assert not_slower(normal_batches, during_batches), (normal_batches, during_batches)
    wait_until(
        lambda: len(logged(stack, after)) == len(after),
        "logging resumed after the database thawed",
        timeout=60,
    )
