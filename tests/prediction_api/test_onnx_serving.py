"""ONNX serving against a real MLflow server, with the API as real processes.

Two APIs watch the same registered model: one in a Python with scikit-learn (the dev
install), one in a Python where scikit-learn, skops, SciPy and pandas cannot be imported,
as in the API image. The champion moves from a version without an ONNX file to one with
it, then to another without it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from devstack import MlflowServer, Service, start_api, start_mlflow_server
from tests.prediction_api.onnx_models import onnx_bytes, save_model_dir
from wine_mlops.features import FEATURE_NAMES, TARGET, load_wine_frame

pytestmark = pytest.mark.integration

WATCH_SECONDS = 2
#: Makes these packages unimportable in the process (``import sklearn`` raises ImportError).
BLOCK_SCIKIT_LEARN = """\
import sys

for _name in ("sklearn", "skops", "scipy", "pandas"):
    sys.modules[_name] = None
"""


@dataclass
class Registry:
    """A real MLflow server and one registered model on it."""

    server: MlflowServer
    client: MlflowClient
    name: str
    experiment_id: str
    workdir: Path

    def register(self, model_dir: Path) -> str:
        """Logs a model directory as a run's artifacts and registers it as a new version."""
        run = self.client.create_run(self.experiment_id, run_name=model_dir.name)
        self.client.log_artifacts(run.info.run_id, str(model_dir), "model")
        self.client.log_metric(run.info.run_id, "accuracy", 0.97)
        self.client.set_terminated(run.info.run_id)
        version = self.client.create_model_version(
            self.name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id
        )
        return str(version.version)

    def promote(self, version: str) -> None:
        self.client.set_registered_model_alias(self.name, "champion", version)


@dataclass
class Apis:
    """The two APIs, and what they answered along the way."""

    registry: Registry
    full: Service
    lean: Service
    forest: Any
    seen: dict[str, Any]


def model_of(api: Service) -> dict[str, Any]:
    answer: dict[str, Any] = httpx.get(f"{api.url}/model", timeout=10).json()
    return answer


def serving(api: Service, version: str) -> bool:
    return httpx.get(f"{api.url}/model", timeout=10).json().get("model_version") == version


def all_wines() -> list[dict[str, float]]:
    frame = load_wine_frame()
    return [
        {name: float(value) for name, value in zip(FEATURE_NAMES, row, strict=True)}
        for row in frame[list(FEATURE_NAMES)].itertuples(index=False)
    ]


@pytest.fixture(scope="module")
def apis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Apis]:
    workdir = tmp_path_factory.mktemp("onnx")
    server = start_mlflow_server(
        workdir, {"MLFLOW_BACKEND_STORE_URI": f"sqlite:///{workdir / 'mlflow.db'}"}
    )
    started: list[Service] = []
    try:
        client = MlflowClient(server.url)
        name = f"onnx-{uuid.uuid4().hex[:8]}"
        client.create_registered_model(name)
        registry = Registry(server, client, name, client.create_experiment(name), workdir)
        frame = load_wine_frame()
        features, target = frame[list(FEATURE_NAMES)], frame[TARGET]
        logistic = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        logistic.fit(features, target)
        forest = RandomForestClassifier(n_estimators=50, random_state=0).fit(features, target)
        v1 = registry.register(save_model_dir(logistic, workdir / "v1", features, None))
        registry.promote(v1)

        blocker = workdir / "no-scikit-learn"
        blocker.mkdir()
        (blocker / "sitecustomize.py").write_text(BLOCK_SCIKIT_LEARN)
        interval = str(WATCH_SECONDS)
        full = start_api(
            server.url,
            workdir,
            wait_ready=False,
            WINE_MODEL_NAME=name,
            WINE_WATCH_INTERVAL_SECONDS=interval,
        )
        started.append(full)
        lean = start_api(
            server.url,
            workdir,
            wait_ready=False,
            WINE_MODEL_NAME=name,
            WINE_WATCH_INTERVAL_SECONDS=interval,
            PYTHONPATH=str(blocker),
        )
        started.append(lean)
        seen: dict[str, Any] = {}
        full.wait_until(lambda: serving(full, v1), "version 1 served")
        lean.wait_until(lambda: model_of(lean).get("status") == 503, "version 1 refused")
        lean.wait_until(lambda: "was refused" in model_of(lean)["detail"], "version 1 refused")
        seen["v1 full"] = model_of(full)
        seen["v1 lean readyz"] = httpx.get(f"{lean.url}/readyz", timeout=10)

        v2 = registry.register(save_model_dir(forest, workdir / "v2", features, onnx_bytes(forest)))
        promoted = time.monotonic()
        registry.promote(v2)
        full.wait_until(lambda: serving(full, v2), "version 2 served", timeout=60)
        seen["swap seconds"] = time.monotonic() - promoted
        lean.wait_until(lambda: serving(lean, v2), "version 2 served", timeout=60)
        seen["v2 full"], seen["v2 lean"] = model_of(full), model_of(lean)
        yield Apis(registry, full, lean, forest, seen)
    finally:
        for service in started:
            service.stop()
        server.stop()


def test_a_version_without_onnx_is_served_by_scikit_learn_where_it_is_installed(
    apis: Apis,
) -> None:
    assert (apis.seen["v1 full"]["model_version"], apis.seen["v1 full"]["runtime"]) == (
        "1",
        "sklearn",
    )


def test_without_scikit_learn_a_first_version_without_onnx_is_refused_with_the_reason(
    apis: Apis,
) -> None:
    readiness = apis.seen["v1 lean readyz"]
    assert readiness.status_code == 503
    assert readiness.json()["detail"].startswith(
        f"no model loaded yet (models:/{apis.registry.name}@champion): version 1 was refused: "
        "version 1 has no ONNX model and scikit-learn is not installed"
    )
    assert f"refused {apis.registry.name} version 1 [format]" in apis.lean.log()


def test_an_onnx_version_is_swapped_in_within_the_watch_interval(apis: Apis) -> None:
    assert apis.seen["v2 full"]["runtime"] == "onnx"
    assert apis.seen["v2 lean"]["runtime"] == "onnx"
    assert apis.seen["v2 lean"]["refused"] is None
    # one look-up per interval, then the download and the checks: well within a second more
    assert apis.seen["swap seconds"] < WATCH_SECONDS + 5


@pytest.mark.parametrize("which", ["full", "lean"])
def test_the_onnx_version_answers_every_wine_like_its_estimator(apis: Apis, which: str) -> None:
    api: Service = getattr(apis, which)
    wines = all_wines()
    answer = httpx.post(f"{api.url}/predict/batch", json=wines, timeout=30)
    assert answer.status_code == 200, answer.text
    answers = answer.json()
    features = load_wine_frame()[list(FEATURE_NAMES)]
    assert [a["class_id"] for a in answers] == apis.forest.predict(features).tolist()
    assert {a["model_version"] for a in answers} == {"2"}
    found = np.array([list(a["probabilities"].values()) for a in answers])
    assert np.abs(found - apis.forest.predict_proba(features)).max() <= 1e-5


def test_without_scikit_learn_a_later_version_without_onnx_is_refused_and_v2_keeps_serving(
    apis: Apis,
) -> None:
    frame = load_wine_frame()
    features, target = frame[list(FEATURE_NAMES)], frame[TARGET]
    logistic = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    logistic.fit(features, target)
    registry = apis.registry
    v3 = registry.register(save_model_dir(logistic, registry.workdir / "v3", features, None))
    registry.promote(v3)
    apis.full.wait_until(lambda: serving(apis.full, v3), "version 3 served by scikit-learn")
    assert model_of(apis.full)["runtime"] == "sklearn"
    apis.lean.wait_until(lambda: model_of(apis.lean)["refused"] is not None, "version 3 refused")
    model = model_of(apis.lean)
    assert (model["model_version"], model["runtime"]) == ("2", "onnx")
    assert model["refused"]["version"] == v3
    assert model["refused"]["kind"] == "format"
    assert "has no ONNX model and scikit-learn is not installed" in model["refused"]["reason"]
    answer = httpx.post(f"{apis.lean.url}/predict", json=all_wines()[0], timeout=10)
    assert answer.status_code == 200
    assert (answer.json()["model_version"], answer.json()["class_id"]) == ("2", 0)
    assert httpx.get(f"{apis.lean.url}/readyz", timeout=10).status_code == 200
    assert f"refused {registry.name} version {v3} [format]" in apis.lean.log()
