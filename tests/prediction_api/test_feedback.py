"""``POST /feedback`` and ``POST /feedback/batch`` as a client sees them: a label for a logged
prediction is recorded once (a repeat is harmless, another class refused), unknown ids and
invalid bodies answer problem documents, and a database that cannot be reached answers 503
while predictions go on."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from tests.prediction_api.conftest import problem, wait_for
from tests.prediction_api.test_prediction_log import (
    log_metric,
    logged_app_maker,
    rows_of,
    sqlite_url,
)
from wine_mlops import monitoring_db
from wine_mlops.monitoring_db import feedback


def labels(url: str) -> dict[str, int]:
    """The ``feedback`` table: prediction id → true class id."""
    engine = monitoring_db.connect(url)
    try:
        with engine.connect() as connection:
            found = connection.execute(sa.select(feedback)).mappings().all()
    finally:
        engine.dispose()
    return {str(row["prediction_id"]): row["true_class_id"] for row in found}


def label(api: TestClient, prediction_id: str, true_class_id: Any) -> Any:
    return api.post(
        "/feedback", json={"prediction_id": prediction_id, "true_class_id": true_class_id}
    )


@pytest.fixture
def log_url(tmp_path: Path) -> str:
    return sqlite_url(tmp_path)


@pytest.fixture
def api(make_client, registry, good_model, log_url: str) -> TestClient:
    # a writer that would wait a minute: feedback must write its worker's queue itself
    make = logged_app_maker(make_client, registry, good_model, log_url)
    return make(WINE_PREDICTION_LOG_FLUSH_SECONDS=60)


def test_a_label_sent_right_after_the_answer_is_recorded_with_whether_it_was_right(
    api: TestClient, wine, log_url: str
) -> None:
    right, wrong = (api.post("/predict", json=w).json() for w in rows_of(wine, 0, 70))
    assert (right["class_id"], wrong["class_id"]) == (0, 1)

    answer = label(api, right["prediction_id"], 0)
    assert answer.status_code == 200
    assert answer.json() == {
        "prediction_id": right["prediction_id"],
        "true_class_id": 0,
        "predicted_class_id": 0,
        "correct": True,
        "recorded": True,
    }
    answer = label(api, wrong["prediction_id"].upper(), 2)  # any case of hex digits
    assert answer.json() == {
        "prediction_id": wrong["prediction_id"],
        "true_class_id": 2,
        "predicted_class_id": 1,
        "correct": False,
        "recorded": True,
    }
    assert labels(log_url) == {right["prediction_id"]: 0, wrong["prediction_id"]: 2}
    assert log_metric(api, "wine_api_feedback_total", outcome="correct") == 1
    assert log_metric(api, "wine_api_feedback_total", outcome="wrong") == 1


def test_the_same_label_again_changes_nothing_and_another_class_is_refused(
    api: TestClient, wine, log_url: str
) -> None:
    pid = api.post("/predict", json=rows_of(wine, 0)[0]).json()["prediction_id"]
    assert label(api, pid, 1).json()["recorded"] is True
    repeat = label(api, pid, 1)
    assert repeat.status_code == 200
    assert repeat.json()["recorded"] is False
    assert repeat.json()["correct"] is False
    conflict = problem(label(api, pid, 0), 409)
    assert f"{pid} is labelled 1, not 0" in conflict["detail"]
    assert labels(log_url) == {pid: 1}
    assert log_metric(api, "wine_api_feedback_total", outcome="wrong") == 1  # counted once
    assert log_metric(api, "wine_api_feedback_total", outcome="correct") == 0


def test_an_unknown_prediction_id_is_404(api: TestClient, log_url: str) -> None:
    unknown = str(uuid.uuid4())
    body = problem(label(api, unknown, 1), 404)
    assert body["detail"].startswith(f"no logged prediction has the id {unknown}")
    assert labels(log_url) == {}


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"prediction_id": "P", "true_class_id": 3}, "true_class_id", "must be a class id"),
        ({"prediction_id": "P", "true_class_id": -1}, "true_class_id", "must be a class id"),
        ({"prediction_id": "P", "true_class_id": "1"}, "true_class_id", "(a JSON integer)"),
        ({"prediction_id": "P", "true_class_id": 1.5}, "true_class_id", "(a JSON integer)"),
        ({"prediction_id": "P", "true_class_id": True}, "true_class_id", "(a JSON integer)"),
        ({"prediction_id": "P"}, "true_class_id", "required field is missing"),
        ({"prediction_id": "no-uuid", "true_class_id": 1}, "prediction_id", "a UUID such as"),
        ({"prediction_id": 7, "true_class_id": 1}, "prediction_id", "a UUID such as"),
        (
            {"prediction_id": "P", "true_class_id": 1, "class_id": 1},
            "class_id",
            "unknown field; expected only prediction_id and true_class_id",
        ),
        ([], "body", "must be a JSON object with prediction_id and true_class_id"),
    ],
)
def test_an_invalid_body_is_a_422_problem_naming_the_field(
    api: TestClient, wine, body: Any, field: str, words: str
) -> None:
    pid = api.post("/predict", json=rows_of(wine, 0)[0]).json()["prediction_id"]
    if isinstance(body, dict) and body.get("prediction_id") == "P":
        body = {**body, "prediction_id": pid}
    answer = problem(api.post("/feedback", json=body), 422)
    (error,) = answer["errors"]
    assert error["field"] == field
    assert words in error["problem"]
    assert answer["detail"] == error["problem"]


def test_a_body_that_is_not_json_is_415_as_for_predictions(api: TestClient) -> None:
    answer = api.post(
        "/feedback", content=b"prediction_id=1", headers={"content-type": "text/plain"}
    )
    assert "must be JSON" in problem(answer, 415)["detail"]


def test_a_batch_is_recorded_all_or_none_and_answered_in_order(
    api: TestClient, wine, log_url: str
) -> None:
    answers = api.post("/predict/batch", json=rows_of(wine, 0, 70, 150)).json()
    ids = [a["prediction_id"] for a in answers]

    unknown = str(uuid.uuid4())
    missing = api.post(
        "/feedback/batch",
        json=[
            {"prediction_id": ids[0], "true_class_id": 0},
            {"prediction_id": unknown, "true_class_id": 0},
        ],
    )
    assert unknown in problem(missing, 404)["detail"]
    assert labels(log_url) == {}  # nothing recorded

    assert label(api, ids[2], 2).status_code == 200
    conflicting = api.post(
        "/feedback/batch",
        json=[
            {"prediction_id": ids[0], "true_class_id": 0},
            {"prediction_id": ids[2], "true_class_id": 0},
        ],
    )
    problem(conflicting, 409)
    assert labels(log_url) == {ids[2]: 2}

    batch = [
        {"prediction_id": ids[1], "true_class_id": 1},
        {"prediction_id": ids[0], "true_class_id": 2},
        {"prediction_id": ids[2], "true_class_id": 2},
    ]
    answer = api.post("/feedback/batch", json=batch)
    assert answer.status_code == 200
    assert [(a["prediction_id"], a["correct"], a["recorded"]) for a in answer.json()] == [
        (ids[1], True, True),
        (ids[0], False, True),
        (ids[2], True, False),
    ]
    assert labels(log_url) == {ids[0]: 2, ids[1]: 1, ids[2]: 2}
    assert problem(api.post("/feedback/batch", json=[]), 422)["detail"] == (
        "body: the batch is empty; send 1 to 1000 labels"
    )


def test_an_unreachable_database_answers_503_and_predictions_go_on(
    make_client, registry, good_model, sample
) -> None:
    with socket.socket() as probe:  # a port nothing listens on: the connection is refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    registry.register(good_model)
    api = make_client(
        WINE_MONITORING_DB_URL=f"postgresql+psycopg2://monitoring_app:x@127.0.0.1:{port}/monitoring",
        WINE_PREDICTION_LOG_FLUSH_SECONDS=0.05,
    )
    wait_for(lambda: api.get("/readyz").status_code == 200)
    answer = api.post("/predict", json=sample)
    assert answer.status_code == 200
    body = problem(label(api, answer.json()["prediction_id"], 0), 503)
    assert "monitoring database cannot be reached" in body["detail"]
    wait_for(
        lambda: log_metric(api, "wine_api_prediction_log_dropped_total", reason="db_error") == 1
    )
    assert api.post("/predict", json=sample).status_code == 200


def test_the_openapi_document_describes_feedback_and_the_answers_id(api: TestClient) -> None:
    document = api.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    assert schemas["Prediction"]["properties"]["prediction_id"]["format"] == "uuid"
    assert "prediction_id" in schemas["Prediction"]["required"]
    operation = document["paths"]["/feedback"]["post"]
    assert operation["summary"]
    assert operation["description"]
    assert operation["responses"]["404"]["description"].startswith("No logged prediction")
    assert "409" in operation["responses"]
    assert schemas["Feedback"]["examples"]
    assert set(schemas["FeedbackResult"]["required"]) == {
        "prediction_id",
        "true_class_id",
        "predicted_class_id",
        "correct",
        "recorded",
    }
