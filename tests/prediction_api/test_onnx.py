"""Serving with onnxruntime: a version's ONNX file runs it, its estimator only without one.

Every version here is a real model directory as training logs it (skops, training ranges
and, for most, an ONNX file converted by skl2onnx), loaded by the real safe loader.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sklearn.linear_model import LogisticRegression

from prediction_api.metrics import ApiMetrics
from tests.prediction_api.conftest import problem, wait_for
from tests.prediction_api.onnx_models import onnx_bytes, save_model_dir
from tests.prediction_api.registry import InMemoryRegistry
from wine_mlops.features import FEATURE_NAMES, TARGET

SERVING_LOGGER = "prediction_api.serving"


def model_dir(model, tmp_path: Path, wine, name: str, onnx_model: bytes | None) -> Path:
    return save_model_dir(model, tmp_path / name, wine[list(FEATURE_NAMES)], onnx_model)


def all_wines(wine) -> list[dict[str, float]]:
    return [
        {name: float(value) for name, value in zip(FEATURE_NAMES, row, strict=True)}
        for row in wine[list(FEATURE_NAMES)].itertuples(index=False)
    ]


def refused_count(api: TestClient, reason: str) -> float | None:
    metrics: ApiMetrics = api.app.state.metrics  # type: ignore[attr-defined]
    return metrics.registry.get_sample_value("wine_api_model_refused_total", {"reason": reason})


@pytest.fixture
def block_scikit_learn(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Makes scikit-learn and skops unimportable, as in the API image (undone after the test).

    Called once the test's model files are written (writing them needs both).
    """

    def block() -> None:
        for name in [n for n in sys.modules if n.split(".")[0] in ("sklearn", "skops")]:
            monkeypatch.setitem(sys.modules, name, None)
        monkeypatch.setitem(sys.modules, "sklearn", None)
        monkeypatch.setitem(sys.modules, "skops", None)
        with pytest.raises(ImportError):
            import sklearn  # noqa: F401
        with pytest.raises(ImportError):
            import skops.io  # noqa: F401

    return block


def test_a_version_with_onnx_answers_every_wine_like_its_estimator(
    make_client, registry: InMemoryRegistry, good_model, wine, tmp_path: Path
) -> None:
    registry.register(model_dir(good_model, tmp_path, wine, "v1", onnx_bytes(good_model)))
    api = make_client()
    wait_for(lambda: api.get("/readyz").status_code == 200)
    assert api.get("/model").json()["runtime"] == "onnx"

    answers = api.post("/predict/batch", json=all_wines(wine))
    assert answers.status_code == 200, answers.text
    features = wine[list(FEATURE_NAMES)]
    expected_ids = good_model.predict(features).tolist()
    expected = good_model.predict_proba(features)
    assert len(answers.json()) == len(expected_ids) == 178
    assert [a["class_id"] for a in answers.json()] == expected_ids
    found = np.array([list(a["probabilities"].values()) for a in answers.json()])
    assert np.abs(found - expected).max() <= 1e-5
    assert all(isinstance(p, float) for a in answers.json() for p in a["probabilities"].values())
    assert list(answers.json()[0]["probabilities"]) == ["Cultivar 1", "Cultivar 2", "Cultivar 3"]


def test_a_version_without_onnx_is_served_by_scikit_learn(
    make_client, registry: InMemoryRegistry, good_model, wine, tmp_path: Path, sample
) -> None:
    registry.register(model_dir(good_model, tmp_path, wine, "v1", None))
    api = make_client()
    wait_for(lambda: api.get("/readyz").status_code == 200)
    assert api.get("/model").json()["runtime"] == "sklearn"
    assert api.post("/predict", json=sample).json()["class_id"] == 0


def test_a_sklearn_version_is_hot_swapped_for_an_onnx_version(
    make_client, registry: InMemoryRegistry, good_model, wine, tmp_path: Path, sample
) -> None:
    registry.register(model_dir(good_model, tmp_path, wine, "v1", None))
    api = make_client()
    wait_for(lambda: api.get("/readyz").status_code == 200)
    assert api.get("/model").json()["runtime"] == "sklearn"
    registry.register(model_dir(good_model, tmp_path, wine, "v2", onnx_bytes(good_model)))
    wait_for(lambda: api.get("/model").json()["model_version"] == "2")
    model = api.get("/model").json()
    assert (model["runtime"], model["refused"]) == ("onnx", None)
    answer = api.post("/predict", json=sample).json()
    assert (answer["model_version"], answer["class_id"]) == ("2", 0)


def test_without_scikit_learn_a_version_without_onnx_is_refused_and_the_last_good_serves(
    make_client,
    registry: InMemoryRegistry,
    block_scikit_learn: Callable[[], None],
    good_model,
    wine,
    tmp_path: Path,
    sample,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=SERVING_LOGGER)
    with_onnx = model_dir(good_model, tmp_path, wine, "v1", onnx_bytes(good_model))
    without_onnx = model_dir(good_model, tmp_path, wine, "v2", None)
    block_scikit_learn()
    registry.register(with_onnx)
    api = make_client()
    wait_for(lambda: api.get("/readyz").status_code == 200)
    assert api.get("/model").json()["runtime"] == "onnx"

    registry.register(without_onnx)
    wait_for(lambda: refused_count(api, "format") == 1)
    model = api.get("/model").json()
    assert (model["model_version"], model["runtime"]) == ("1", "onnx")
    refused = model["refused"]
    assert (refused["version"], refused["kind"]) == ("2", "format")
    assert "ONNX" in refused["reason"]
    assert "scikit-learn" in refused["reason"]
    answer = api.post("/predict", json=sample).json()
    assert (answer["model_version"], answer["class_id"]) == ("1", 0)
    (line,) = [
        r for r in caplog.records if r.getMessage().startswith("refused wine-classifier version 2")
    ]
    assert refused["reason"] in line.getMessage()
    assert "version 1 keeps serving" in line.getMessage()


def test_without_scikit_learn_a_first_version_without_onnx_leaves_the_api_not_ready(
    make_client,
    registry: InMemoryRegistry,
    block_scikit_learn: Callable[[], None],
    good_model,
    wine,
    tmp_path: Path,
) -> None:
    registry.register(model_dir(good_model, tmp_path, wine, "v1", None))
    block_scikit_learn()
    api = make_client()
    wait_for(lambda: refused_count(api, "format") == 1)
    detail = problem(api.get("/readyz"), 503)["detail"]
    assert "version 1 was refused: " in detail
    assert "ONNX" in detail


@pytest.mark.parametrize(
    ("damage", "kind"),
    [
        ("width", "signature"),
        ("class_ids", "classes"),
        ("feature_names", "signature"),
        ("no_metadata", "signature"),
        ("garbage", "malformed"),
    ],
)
def test_a_damaged_onnx_file_is_refused_and_never_swapped_in(
    client: TestClient,
    registry: InMemoryRegistry,
    good_model,
    wine,
    tmp_path: Path,
    sample,
    damage: str,
    kind: str,
) -> None:
    if damage == "width":  # a model of the first 12 features, declaring 12 columns
        narrow = LogisticRegression(max_iter=5000).fit(
            wine[list(FEATURE_NAMES[:12])].to_numpy(), wine[TARGET]
        )
        onnx_model = onnx_bytes(narrow, width=12)
    elif damage == "class_ids":
        onnx_model = onnx_bytes(
            good_model, metadata={"class_ids": "0,1", "feature_names": ",".join(FEATURE_NAMES)}
        )
    elif damage == "feature_names":
        reversed_names = ",".join(reversed(FEATURE_NAMES))
        onnx_model = onnx_bytes(
            good_model, metadata={"class_ids": "0,1,2", "feature_names": reversed_names}
        )
    elif damage == "no_metadata":
        onnx_model = onnx_bytes(good_model, metadata={})
    else:
        onnx_model = b"these bytes are not an ONNX model"
    registry.register(model_dir(good_model, tmp_path, wine, "v2", onnx_model))
    wait_for(lambda: refused_count(client, kind) == 1)
    model = client.get("/model").json()
    assert model["model_version"] == "1"
    assert (model["refused"]["version"], model["refused"]["kind"]) == ("2", kind)
    assert "ONNX" in model["refused"]["reason"]
    answer = client.post("/predict", json=sample)
    assert answer.status_code == 200
    assert answer.json()["model_version"] == "1"
