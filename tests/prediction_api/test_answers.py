"""The answers' JSON, built in one go by the predictor, is the documented response model's:
same fields in the same order, the same values whichever way a request is answered (on the
event loop or, for a large batch, in the thread pool), and every row counted."""

from __future__ import annotations

import json
import uuid
from typing import Any, get_type_hints

import pytest
from fastapi.testclient import TestClient

from prediction_api.routes.predictions import INLINE_ROWS
from prediction_api.schemas import Prediction, PredictionJson
from tests.prediction_api.conftest import wait_for
from tests.prediction_api.onnx_models import onnx_bytes
from tests.prediction_api.registry import InMemoryRegistry
from tests.prediction_api.test_metrics import scrape
from wine_mlops.features import FEATURE_NAMES
from wine_mlops.model_files import ModelFiles
from wine_mlops.training_ranges import TrainingRanges

FIELDS = [
    "prediction_id",
    "class_id",
    "class_name",
    "probabilities",
    "model_name",
    "model_version",
    "warnings",
]


@pytest.fixture(params=["onnx", "sklearn"])
def api(request, make_client, registry: InMemoryRegistry, good_model, wine) -> TestClient:
    """An app serving ``good_model`` as version 1 with the ranges of every wine: by
    onnxruntime (small requests on the event loop) or by scikit-learn (in the thread pool)."""
    onnx = onnx_bytes(good_model) if request.param == "onnx" else None
    ranges = TrainingRanges.of(wine[list(FEATURE_NAMES)])
    registry.register(ModelFiles(good_model, ranges, onnx))
    client = make_client()
    wait_for(lambda: client.get("/readyz").status_code == 200)
    assert client.get("/model").json()["runtime"] == request.param
    return client


def wines(wine, count: int) -> list[dict[str, float]]:
    """``count`` wines of the data set in turn, every seventh with a unit mix-up."""
    rows = wine[list(FEATURE_NAMES)].to_dict("records")
    chosen = [dict(rows[i % len(rows)]) for i in range(count)]
    for i in range(0, count, 7):
        chosen[i]["alcohol"] = 0.132
    return chosen


def test_the_built_json_has_the_response_models_fields_in_order() -> None:
    assert list(get_type_hints(PredictionJson)) == list(Prediction.model_fields) == FIELDS


def test_one_answer_is_the_documented_object(api: TestClient, sample) -> None:
    answer = api.post("/predict", json=sample)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    body: dict[str, Any] = json.loads(answer.content)
    assert list(body) == FIELDS
    assert Prediction.model_validate(body).model_dump(mode="json") == body
    assert body["class_name"] == "Cultivar 1"
    assert list(body["probabilities"]) == ["Cultivar 1", "Cultivar 2", "Cultivar 3"]
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
    assert body["model_name"] == "wine-classifier"
    assert body["model_version"] == "1"
    assert body["warnings"] == []
    assert uuid.UUID(body["prediction_id"]).version == 4


@pytest.mark.parametrize("count", [1, INLINE_ROWS, INLINE_ROWS + 1, 1000])
def test_a_batch_answers_each_wine_as_alone_whatever_its_size(
    api: TestClient, wine, count: int
) -> None:
    batch = wines(wine, count)
    answer = api.post("/predict/batch", json=batch)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    answers = answer.json()
    assert len(answers) == count
    ids = [a["prediction_id"] for a in answers]
    assert len(set(ids)) == count  # one id per wine, none repeated
    assert all(str(uuid.UUID(pid)) == pid and uuid.UUID(pid).version == 4 for pid in ids)
    for i in sorted({0, min(1, count - 1), count // 2, count - 1}):  # with and without warnings
        alone = api.post("/predict", json=batch[i]).json()
        # the model's arithmetic on a matrix of other rows may differ in the last digits
        assert answers[i]["probabilities"] == pytest.approx(alone["probabilities"], rel=1e-6)
        # each answer its own id; everything else the same
        unrelated = {"probabilities": None, "prediction_id": None}
        assert {**answers[i], **unrelated} == {**alone, **unrelated}
        assert answers[i]["prediction_id"] != alone["prediction_id"]
        assert list(answers[i]) == FIELDS
        assert bool(alone["warnings"]) == (i % 7 == 0)


def test_every_row_of_every_request_is_counted_by_class(api: TestClient, wine) -> None:
    batch = wines(wine, INLINE_ROWS + 1)
    classes = [a["class_name"] for a in api.post("/predict/batch", json=batch).json()]
    classes.append(api.post("/predict", json=batch[0]).json()["class_name"])
    classes.append(api.post("/predict", json=batch[1]).json()["class_name"])
    classes.append(api.post("/predict", json=batch[2]).json()["class_name"])
    assert api.post("/predict", json={"alcohol": "x"}).status_code == 422
    samples = scrape(api)
    for name in set(classes):
        by_class = (("class_name", name), ("model_version", "1"))
        assert samples["wine_api_predictions_total", by_class] == classes.count(name)
    for path, status, count in (
        ("/predict", "200", 3),
        ("/predict", "422", 1),
        ("/predict/batch", "200", 1),
    ):
        labels = (("method", "POST"), ("route", path), ("status", status))
        assert samples["wine_api_requests_total", labels] == count
        assert samples["wine_api_request_duration_seconds_count", labels] == count
