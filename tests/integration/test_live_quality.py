"""Drift and live accuracy end to end: a real training logs each feature's bins with the
version it registers, and the prediction API serving that version (gunicorn, two workers,
prometheus_client's multiprocess mode) measures its own logged answers against them, with the
prediction log on SQLite (``make dev``) and on PostgreSQL (as in compose, logging in as the
least-privileged ``monitoring_app`` role with a password file)."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.tracking import MlflowClient

from devstack import (
    MlflowServer,
    Service,
    metric_value,
    postgres_server,
    run_training,
    series,
    start_api,
)
from wine_mlops.drift import PSI_MAJOR, PSI_MODERATE, FeatureBins
from wine_mlops.features import FEATURE_NAMES, TARGET, load_wine_frame
from wine_mlops.model_files import load_version_files
from wine_mlops.training_ranges import TRAINING_RANGES_FILE, TrainingRanges

pytestmark = [
    pytest.mark.integration,
    pytest.mark.parametrize("mlflow_server", ["sqlite"], indirect=True),
]

log = logging.getLogger(__name__)

Figures = dict[str, dict[str, float]]


@pytest.fixture(scope="module")
def model_name(mlflow_server: MlflowServer) -> str:
    """A model trained by a real session (LogisticRegression, the quickest candidate)."""
    suffix = uuid.uuid4().hex[:8]
    name = f"drift-model-{suffix}"
    result = run_training(
        mlflow_server.url,
        candidates="LogisticRegression",
        WINE_EXPERIMENT_NAME=f"drift-{suffix}",
        WINE_MODEL_NAME=name,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return name


def test_the_registered_version_carries_the_bins_of_its_training_split(
    mlflow_server: MlflowServer, model_name: str, tmp_path: Path
) -> None:
    client = MlflowClient(mlflow_server.url)
    version = client.get_model_version_by_alias(model_name, "champion").version
    # the file itself, as anyone downloading the version gets it
    repository = get_artifact_repository(
        client.get_model_version_download_uri(model_name, version),
        tracking_uri=mlflow_server.url,
    )
    path = repository.download_artifacts(f"extra_files/{TRAINING_RANGES_FILE}", str(tmp_path))
    document: dict[str, Any] = json.loads(Path(path).read_text())
    assert set(document["features"]["alcohol"]) == {"min", "max", "bins"}
    assert len(document["features"]["alcohol"]["bins"]["edges"]) == 9
    # and as the API loads it: 13 features, each with well-formed bins of the 133 training rows
    ranges = load_version_files(client, mlflow_server.url, model_name, version).training_ranges
    assert isinstance(ranges, TrainingRanges)
    assert ranges.rows == 133
    bins = ranges.feature_bins()
    assert bins is not None
    assert len(bins) == len(FEATURE_NAMES)
    for feature_bins in bins:
        assert sum(feature_bins.shares) == pytest.approx(1.0)
        # deciles of 133 rows: every bin holds roughly a tenth (ties move a few rows)
        assert max(feature_bins.shares) < 0.2
    assert isinstance(bins[0], FeatureBins)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def log_env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """The API's settings of a prediction log on SQLite, or on a real PostgreSQL."""
    if request.param == "sqlite":
        folder = tmp_path_factory.mktemp("log")
        yield {"WINE_MONITORING_DB_URL": f"sqlite:///{folder / 'monitoring.db'}"}
        return
    with postgres_server() as pg:
        secret = pg.write_password_file(tmp_path_factory.mktemp("secrets") / "password")
        yield {
            "WINE_MONITORING_DB_URL": pg.monitoring_url(with_password=False),
            "WINE_MONITORING_DB_PASSWORD_FILE": str(secret),
        }


@pytest.fixture(scope="module")
def api(
    mlflow_server: MlflowServer,
    model_name: str,
    log_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Service]:
    """The API serving the trained version with two workers, its drift window the size of
    the data set."""
    service = start_api(
        mlflow_server.url,
        tmp_path_factory.mktemp("api"),
        workers=2,
        WINE_MODEL_NAME=model_name,
        WINE_MONITORING_REFRESH_SECONDS="0.5",
        WINE_PREDICTION_LOG_FLUSH_SECONDS="0.2",
        WINE_DRIFT_WINDOW="178",
        **cast("dict[str, Any]", log_env),  # more variables, all strings
    )

    def every_worker_serves() -> bool:
        text = httpx.get(f"{service.url}/metrics", timeout=10).text
        return metric_value(text, "wine_api_model_loaded") == 1  # the least of the workers'

    service.wait_until(every_worker_serves, "both workers to load the model")
    yield service
    service.stop()


def live(api: Service) -> Figures:
    """One scrape's live figures: metric name → {label value ("" without labels) → value}."""
    text = httpx.get(f"{api.url}/metrics", timeout=10).text
    figures: Figures = {}
    for (name, labels), value in series(text).items():
        if name.startswith(("wine_api_live_", "wine_api_feature_drift", "wine_api_drift_")):
            figures.setdefault(name, {})[next(iter(dict(labels).values()), "")] = value
    return figures


def wait_for_figures(api: Service, check: Any, what: str) -> Figures:
    """Scrapes until ``check(figures)`` holds on three scrapes in a row (with two workers,
    each answers some), returns the last."""
    seen: list[Figures] = []

    def settled() -> Figures | None:
        for _ in range(3):
            seen.append(live(api))
            if not check(seen[-1]):
                return None
        return seen[-1]

    return api.wait_until(settled, what, timeout=60, interval=0.3)


def as_json(frame) -> list[dict[str, float]]:
    return [
        {name: float(v) for name, v in zip(FEATURE_NAMES, row, strict=True)}
        for row in frame[list(FEATURE_NAMES)].itertuples(index=False)
    ]


def test_wines_of_the_data_set_show_no_drift_and_shifted_ones_do(api: Service) -> None:
    wine = load_wine_frame()
    with httpx.Client(base_url=api.url, timeout=30) as client:
        answers = client.post("/predict/batch", json=as_json(wine))
        assert answers.status_code == 200
        labels = [
            {"prediction_id": a["prediction_id"], "true_class_id": int(t)}
            for a, t in zip(answers.json(), wine[TARGET], strict=True)
        ]
        assert client.post("/feedback/batch", json=labels).status_code == 200
    right = sum(a["class_id"] == t for a, t in zip(answers.json(), wine[TARGET], strict=True))

    stable = wait_for_figures(
        api,
        lambda f: (
            f.get("wine_api_drift_window_rows") == {"": 178}
            and sum(f.get("wine_api_live_labelled", {}).values()) == 178
        ),
        "the data set measured",
    )
    drift = stable["wine_api_feature_drift"]
    assert set(drift) == set(FEATURE_NAMES)
    assert max(drift.values()) < PSI_MODERATE
    ((version, accuracy),) = stable["wine_api_live_accuracy"].items()
    assert accuracy == pytest.approx(right / 178)
    assert stable["wine_api_live_labelled"] == {version: 178}

    # the same wines measured one standard deviation higher on every feature
    shifted = wine.copy()
    for name in FEATURE_NAMES:
        shifted[name] += wine[name].std()
    with httpx.Client(base_url=api.url, timeout=30) as client:
        assert client.post("/predict/batch", json=as_json(shifted)).status_code == 200
    moved = wait_for_figures(
        api,
        lambda f: min(f.get("wine_api_feature_drift", {"": 0}).values()) > PSI_MAJOR,
        "every feature drifted",
    )
    assert moved["wine_api_drift_window_rows"] == {"": 178}  # the newest 178: the shifted ones
    log.info(
        "PSI of the data set: %s; shifted by one standard deviation: %s",
        {k: round(v, 3) for k, v in drift.items()},
        {k: round(v, 3) for k, v in moved["wine_api_feature_drift"].items()},
    )
