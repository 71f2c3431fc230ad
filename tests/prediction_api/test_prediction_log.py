"""The prediction log: every answer carries a prediction id, and every answered wine is written
to the monitoring database (SQLite here, as ``make dev`` runs it) by the writer thread, with
the answering version, its class, its features and its probabilities; a full queue or a
failing database never fails a prediction, and every lost row is counted."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from prediction_api.prediction_log import new_prediction_ids
from tests.prediction_api.conftest import problem, wait_for
from tests.prediction_api.registry import InMemoryRegistry
from tests.prediction_api.test_metrics import scrape
from wine_mlops import monitoring_db
from wine_mlops.features import FEATURE_NAMES
from wine_mlops.monitoring_db import feedback, predictions


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'monitoring.db'}"


def logged_rows(url: str) -> dict[str, dict[str, Any]]:
    """The ``predictions`` table as the API wrote it, by prediction id."""
    engine = monitoring_db.connect(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(sa.select(predictions)).mappings().all()
    finally:
        engine.dispose()
    return {str(row["id"]): dict(row) for row in rows}


def log_metric(client: TestClient, name: str, **labels: str) -> float:
    """One sample of the API's ``/metrics``."""
    return scrape(client)[name, tuple(sorted(labels.items()))]


@pytest.fixture
def log_url(tmp_path: Path) -> str:
    return sqlite_url(tmp_path)


def logged_app_maker(
    make_client: Callable[..., TestClient], registry: InMemoryRegistry, model: Any, url: str
) -> Callable[..., TestClient]:
    """A maker of running apps serving ``model`` (version 1) with a prediction log at ``url``
    (written every 50 ms unless the settings given say otherwise)."""

    def make(**overrides: object) -> TestClient:
        if not registry.models:
            registry.register(model)
        settings: dict[str, object] = {
            "WINE_MONITORING_DB_URL": url,
            "WINE_PREDICTION_LOG_FLUSH_SECONDS": 0.05,
            **overrides,
        }
        api = make_client(**settings)
        wait_for(lambda: api.get("/readyz").status_code == 200)
        return api

    return make


@pytest.fixture
def logged(
    make_client, registry: InMemoryRegistry, good_model, log_url: str
) -> Callable[..., TestClient]:
    """Builds a running app serving ``good_model`` (version 1) with a prediction log."""
    return logged_app_maker(make_client, registry, good_model, log_url)


def rows_of(wine, *positions: int) -> list[dict[str, float]]:
    return [{name: float(wine[name].iloc[i]) for name in FEATURE_NAMES} for i in positions]


@pytest.mark.parametrize("count", [1, 2, 15, 16, 1000])
def test_prediction_ids_are_distinct_random_uuid4s(count: int) -> None:
    ids = new_prediction_ids(count)
    assert len(ids) == count
    assert len(set(ids)) == count
    for pid in ids:
        parsed = uuid.UUID(pid)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == pid  # lower case, with hyphens
    assert not set(ids) & set(new_prediction_ids(count))


def test_every_answered_wine_is_logged_with_its_version_class_features_and_probabilities(
    logged, wine, log_url: str
) -> None:
    api = logged()
    wines = rows_of(wine, 0, 70, 150)  # one of each class
    one = api.post("/predict", json=wines[0]).json()
    batch = api.post("/predict/batch", json=wines).json()
    answers = [one, *batch]
    expected = [wines[0], *wines]
    wait_for(lambda: len(logged_rows(log_url)) == 4)
    rows = logged_rows(log_url)
    assert set(rows) == {answer["prediction_id"] for answer in answers}
    for answer, sent in zip(answers, expected, strict=True):
        row = rows[answer["prediction_id"]]
        assert row["model_name"] == "wine-classifier"
        assert row["model_version"] == "1"
        assert row["class_id"] == answer["class_id"]
        assert row["features"] == [sent[name] for name in FEATURE_NAMES]
        assert row["probabilities"] == pytest.approx(list(answer["probabilities"].values()))
        assert abs(row["created_at"].replace(tzinfo=UTC) - datetime.now(UTC)) < timedelta(minutes=5)
    assert sorted(row["class_id"] for row in rows.values()) == [0, 0, 1, 2]
    assert log_metric(api, "wine_api_prediction_log_rows_total") == 4
    assert log_metric(api, "wine_api_prediction_log_dropped_total", reason="queue_full") == 0
    assert log_metric(api, "wine_api_prediction_log_dropped_total", reason="db_error") == 0


def test_the_original_forms_query_is_logged_too(logged, wine, log_url: str) -> None:
    api = logged()
    (sent,) = rows_of(wine, 100)
    query = {f"feature_{i}": sent[name] for i, name in enumerate(FEATURE_NAMES, start=1)}
    answer = api.get("/predict/", params=query)
    assert answer.status_code == 200
    assert answer.text == "1"  # the legacy answer is still the bare class id
    wait_for(lambda: len(logged_rows(log_url)) == 1)
    (row,) = logged_rows(log_url).values()
    assert row["class_id"] == 1
    assert row["features"] == [sent[name] for name in FEATURE_NAMES]


def test_without_a_database_answers_still_carry_ids_and_feedback_says_the_log_is_off(
    client: TestClient, sample
) -> None:
    answer = client.post("/predict", json=sample).json()
    assert uuid.UUID(answer["prediction_id"]).version == 4
    body = problem(
        client.post(
            "/feedback", json={"prediction_id": answer["prediction_id"], "true_class_id": 0}
        ),
        503,
    )
    assert "prediction log is off" in body["detail"]
    assert "WINE_MONITORING_DB_URL" in body["detail"]


def test_a_full_queue_drops_and_counts_rows_and_the_prediction_still_answers(
    logged, wine, log_url: str
) -> None:
    # a writer that waits a minute: the queue holds what is sent meanwhile
    api = logged(
        WINE_PREDICTION_LOG_QUEUE=5,
        WINE_PREDICTION_LOG_FLUSH_SECONDS=60,
        WINE_PREDICTION_LOG_BATCH=100,
    )
    first = api.post("/predict/batch", json=rows_of(wine, 0, 1, 2, 3))
    second = api.post("/predict/batch", json=rows_of(wine, 4, 5))  # 6 rows > 5
    third = api.post("/predict", json=rows_of(wine, 6)[0])
    assert [first.status_code, second.status_code, third.status_code] == [200, 200, 200]
    assert len(second.json()) == 2
    assert log_metric(api, "wine_api_prediction_log_dropped_total", reason="queue_full") == 2
    assert log_metric(api, "wine_api_prediction_log_queued_rows") == 5
    api.__exit__(None, None, None)  # stopping writes what is queued
    assert set(logged_rows(log_url)) == {
        *(a["prediction_id"] for a in first.json()),
        third.json()["prediction_id"],
    }


def test_a_failing_database_loses_counted_rows_never_a_prediction_and_the_log_recovers(
    logged, wine, log_url: str
) -> None:
    api = logged()
    api.post("/predict", json=rows_of(wine, 0)[0])
    wait_for(lambda: len(logged_rows(log_url)) == 1)
    engine = monitoring_db.connect(log_url)
    try:
        # the database refuses the inserts: the table is gone
        with engine.begin() as connection:
            connection.execute(sa.text("ALTER TABLE predictions RENAME TO predictions_away"))
        lost = api.post("/predict/batch", json=rows_of(wine, 1, 2, 3))
        assert lost.status_code == 200
        assert len(lost.json()) == 3
        wait_for(
            lambda: log_metric(api, "wine_api_prediction_log_dropped_total", reason="db_error") == 3
        )
        with engine.begin() as connection:
            connection.execute(sa.text("ALTER TABLE predictions_away RENAME TO predictions"))
    finally:
        engine.dispose()
    after = api.post("/predict", json=rows_of(wine, 4)[0]).json()
    # the writer backs off, then writes again by itself
    wait_for(lambda: after["prediction_id"] in logged_rows(log_url), timeout=30)
    assert not {a["prediction_id"] for a in lost.json()} & set(logged_rows(log_url))
    assert log_metric(api, "wine_api_prediction_log_rows_total") == 2


def test_predictions_older_than_the_retention_period_are_deleted_with_their_feedback(
    logged, log_url: str, wine
) -> None:
    old, recent = str(uuid.uuid4()), str(uuid.uuid4())
    engine = monitoring_db.connect(log_url)
    try:
        with engine.begin() as connection:
            for pid, age in ((old, timedelta(days=40)), (recent, timedelta(days=20))):
                connection.execute(
                    predictions.insert(),
                    {
                        "id": uuid.UUID(pid),
                        "created_at": datetime.now(UTC) - age,
                        "model_name": "wine-classifier",
                        "model_version": "1",
                        "features": [1.0] * 13,
                        "class_id": 0,
                        "probabilities": [1.0, 0.0, 0.0],
                    },
                )
                connection.execute(
                    feedback.insert(), {"prediction_id": uuid.UUID(pid), "true_class_id": 0}
                )
    finally:
        engine.dispose()
    api = logged(WINE_PREDICTION_LOG_RETENTION_DAYS=30)
    wait_for(lambda: old not in logged_rows(log_url))
    assert recent in logged_rows(log_url)
    gone = api.post("/feedback", json={"prediction_id": old, "true_class_id": 0})
    assert problem(gone, 404)["detail"].startswith(f"no logged prediction has the id {old}")
    kept = api.post("/feedback", json={"prediction_id": recent, "true_class_id": 0})
    assert kept.json()["recorded"] is False  # its feedback is still there


def test_an_unreadable_password_file_loses_counted_rows_and_refuses_feedback(
    logged, wine, tmp_path: Path
) -> None:
    secret = tmp_path / "monitoring-db-password"  # not there yet, as a secret not mounted
    api = logged(WINE_MONITORING_DB_PASSWORD_FILE=str(secret))
    assert api.post("/predict", json=rows_of(wine, 0)[0]).status_code == 200
    wait_for(
        lambda: log_metric(api, "wine_api_prediction_log_dropped_total", reason="db_error") == 1
    )
    refused = problem(
        api.post("/feedback", json={"prediction_id": str(uuid.uuid4()), "true_class_id": 0}), 503
    )
    assert "monitoring database cannot be reached" in refused["detail"]
    assert str(secret) not in refused["detail"]  # paths stay in the log
    assert api.post("/predict", json=rows_of(wine, 1)[0]).status_code == 200
