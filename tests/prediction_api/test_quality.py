"""Live accuracy and input drift, computed from a real prediction log (SQLite) and read back
through the app's ``/metrics`` as Prometheus scrapes it."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import Engine

from tests.prediction_api.conftest import wait_for
from tests.prediction_api.registry import InMemoryRegistry
from wine_mlops import monitoring_db
from wine_mlops.drift import PSI_MAJOR, PSI_MODERATE
from wine_mlops.features import FEATURE_NAMES, TARGET
from wine_mlops.model_files import ModelFiles
from wine_mlops.training_ranges import FeatureRange, TrainingRanges

LIVE = (
    "wine_api_live_accuracy",
    "wine_api_live_labelled",
    "wine_api_feature_drift",
    "wine_api_drift_window_rows",
    "wine_api_monitoring_last_refresh_timestamp_seconds",
)
FAILURES = "wine_api_monitoring_refresh_failures_total"

Scrape = dict[str, dict[str, float]]


def scrape(client: TestClient) -> Scrape:
    """``GET /metrics`` parsed, the live figures and the failures counter: sample name →
    {its one label's value ("" without labels) → value}."""
    answer = client.get("/metrics")
    assert answer.status_code == 200
    found: Scrape = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            if sample.name not in (*LIVE, FAILURES):
                continue
            assert len(sample.labels) <= 1, sample
            label = next(iter(sample.labels.values()), "")
            found.setdefault(sample.name, {})[label] = sample.value
    return found


def refreshed_after(client: TestClient, moment: float) -> Scrape:
    """Scrapes until the live figures come from a refresh that started after ``moment``
    (so they include every row written before it)."""
    scraped: list[Scrape] = []

    def fresh() -> bool:
        scraped.append(scrape(client))
        stamp = scraped[-1].get("wine_api_monitoring_last_refresh_timestamp_seconds", {})
        return stamp.get("", -math.inf) > moment

    wait_for(fresh)
    return scraped[-1]


@pytest.fixture
def log_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'monitoring.db'}"


@pytest.fixture
def log_db(log_url: str) -> Iterator[Engine]:
    """The prediction log's database (tables created), for the test to fill."""
    engine = monitoring_db.connect(log_url)
    yield engine
    engine.dispose()


@pytest.fixture
def training(wine):
    """The rows the served version was trained on: three quarters of the data set."""
    return wine.sample(frac=0.75, random_state=5)


@pytest.fixture
def live_app(
    make_client, registry: InMemoryRegistry, good_model, training, log_url: str, log_db: Engine
) -> Callable[..., TestClient]:
    """Starts an app on the log, serving ``good_model`` as version 1 with the ranges and
    bins of ``training`` (or ``ranges`` when given), refreshing every 50 ms."""

    def start(ranges: TrainingRanges | None = None, **settings: object) -> TestClient:
        trained = TrainingRanges.of(training[list(FEATURE_NAMES)])
        registry.register(ModelFiles(good_model, ranges or trained))
        api = make_client(
            WINE_MONITORING_DB_URL=log_url,
            WINE_MONITORING_REFRESH_SECONDS=0.05,
            WINE_PREDICTION_LOG_FLUSH_SECONDS=0.05,
            **settings,
        )
        wait_for(lambda: api.get("/readyz").status_code == 200)
        return api

    return start


# a day ago: inside the log's retention period, before anything the API itself writes
_clock = [datetime.now(UTC) - timedelta(days=1)]


def later() -> datetime:
    """A moment after every one handed out before (rows get distinct, ordered times)."""
    _clock[0] += timedelta(seconds=1)
    return _clock[0]


def log_rows(
    engine: Engine,
    features: Sequence[Sequence[float]],
    version: str = "1",
    predicted: Sequence[int] | None = None,
    truth: Sequence[int | None] | None = None,
) -> None:
    """Writes logged predictions, in order (the last is the newest), and their feedback.

    Args:
        engine: The log.
        features: Each row's 13 values.
        version: The model version that answered them.
        predicted: Each row's predicted class (default 0).
        truth: Each row's true class, or None for a row without feedback (default: none).
    """
    predicted = predicted or [0] * len(features)
    truth = truth or [None] * len(features)
    rows: list[dict[str, Any]] = []
    labels: list[dict[str, Any]] = []
    for values, class_id, true_class in zip(features, predicted, truth, strict=True):
        pid, when = uuid.uuid4(), later()
        rows.append(
            {
                "id": pid,
                "created_at": when,
                "model_name": "wine-classifier",
                "model_version": version,
                "features": [float(v) for v in values],
                "class_id": class_id,
                "probabilities": [1.0 if c == class_id else 0.0 for c in range(3)],
            }
        )
        if true_class is not None:
            labels.append({"prediction_id": pid, "true_class_id": true_class, "received_at": when})
    with engine.begin() as connection:
        connection.execute(monitoring_db.predictions.insert(), rows)
        if labels:
            connection.execute(monitoring_db.feedback.insert(), labels)


def some_wines(wine, count: int) -> list[list[float]]:
    return wine[list(FEATURE_NAMES)].head(count).to_numpy().tolist()


def test_live_accuracy_and_its_labels_are_exported_by_model_version(
    live_app, log_db: Engine, wine
) -> None:
    # version 1: 10 labelled, 7 right; version 2: 4 labelled, all right; 5 never labelled
    log_rows(log_db, some_wines(wine, 10), "1", [0] * 10, [0] * 7 + [1] * 3)
    log_rows(log_db, some_wines(wine, 4), "2", [2] * 4, [2] * 4)
    log_rows(log_db, some_wines(wine, 5), "2")
    api = live_app()
    live = refreshed_after(api, -math.inf)
    assert live["wine_api_live_accuracy"] == {"1": pytest.approx(0.7), "2": 1.0}
    assert live["wine_api_live_labelled"] == {"1": 10, "2": 4}
    assert live[FAILURES] == {"": 0}


def test_the_live_accuracy_rests_on_the_latest_labels_only(live_app, log_db: Engine, wine) -> None:
    log_rows(log_db, some_wines(wine, 30), "1", [0] * 30, [1] * 30)  # older: all wrong
    log_rows(log_db, some_wines(wine, 6), "2", [1] * 6, [0, 1, 1, 1, 1, 0])  # newest 6
    api = live_app(WINE_LIVE_ACCURACY_WINDOW=5)
    live = refreshed_after(api, -math.inf)
    # the 5 newest labels: 4 right and one wrong of version 2; version 1's are out of the window
    assert live["wine_api_live_accuracy"] == {"2": pytest.approx(0.8)}
    assert live["wine_api_live_labelled"] == {"2": 5}


def test_new_feedback_shows_at_the_next_refresh(live_app, log_db: Engine, wine) -> None:
    api = live_app()
    first = refreshed_after(api, -math.inf)
    assert "wine_api_live_accuracy" not in first  # no label yet: no series
    log_rows(log_db, some_wines(wine, 4), "1", [0] * 4, [0, 0, 0, 2])
    live = refreshed_after(api, time.time())
    assert live["wine_api_live_accuracy"] == {"1": 0.75}


def test_inputs_like_the_training_data_show_no_drift_and_shifted_ones_do(
    live_app, log_db: Engine, wine
) -> None:
    log_rows(log_db, wine[list(FEATURE_NAMES)].to_numpy().tolist())  # the whole data set
    api = live_app(WINE_DRIFT_WINDOW=178)
    live = refreshed_after(api, -math.inf)
    assert live["wine_api_drift_window_rows"] == {"": 178}
    drift = live["wine_api_feature_drift"]
    assert set(drift) == set(FEATURE_NAMES)
    assert max(drift.values()) < PSI_MODERATE  # stable: the data set against 3/4 of itself

    # then 120 wines arrive whose alcohol is 1.5 % vol higher, the rest unchanged
    shifted = wine[list(FEATURE_NAMES)].sample(120, random_state=8).copy()
    shifted["alcohol"] += 1.5
    log_rows(log_db, shifted.to_numpy().tolist())
    live = refreshed_after(api, time.time())
    drift = live["wine_api_feature_drift"]
    assert live["wine_api_drift_window_rows"] == {"": 178}  # the newest 178 of 298 rows
    assert drift["alcohol"] > PSI_MAJOR
    assert max(v for name, v in drift.items() if name != "alcohol") < PSI_MAJOR


def test_an_empty_log_has_a_window_of_no_rows_and_no_drift_figure(live_app) -> None:
    live = refreshed_after(live_app(), -math.inf)
    assert live["wine_api_drift_window_rows"] == {"": 0}
    assert "wine_api_feature_drift" not in live
    assert "wine_api_live_accuracy" not in live


def test_a_version_without_bins_gets_no_drift_series(
    live_app, log_db: Engine, training, wine
) -> None:
    trained = TrainingRanges.of(training[list(FEATURE_NAMES)])
    without_bins = TrainingRanges(
        rows=trained.rows,
        features={n: FeatureRange(min=r.min, max=r.max) for n, r in trained.features.items()},
    )
    log_rows(log_db, some_wines(wine, 3), "1", [0] * 3, [0] * 3)
    live = refreshed_after(live_app(without_bins), -math.inf)
    assert live["wine_api_live_accuracy"] == {"1": 1.0}
    assert "wine_api_feature_drift" not in live
    assert "wine_api_drift_window_rows" not in live


def test_answers_and_feedback_through_the_api_are_measured(live_app, wine) -> None:
    """The real path: answers logged by the API's own writer, labelled through
    ``POST /feedback/batch``, then read by the monitor."""
    api = live_app(WINE_DRIFT_WINDOW=500)
    features = wine[list(FEATURE_NAMES)].to_numpy().tolist()
    rows = [{n: float(v) for n, v in zip(FEATURE_NAMES, r, strict=True)} for r in features]
    answers = api.post("/predict/batch", json=rows)
    assert answers.status_code == 200
    labels = [
        {"prediction_id": answer["prediction_id"], "true_class_id": int(true_class)}
        for answer, true_class in zip(answers.json(), wine[TARGET], strict=True)
    ]
    assert api.post("/feedback/batch", json=labels).status_code == 200
    right = sum(a["class_id"] == t for a, t in zip(answers.json(), wine[TARGET], strict=True))

    def all_measured() -> bool:
        live = scrape(api)
        return live.get("wine_api_live_labelled") == {"1": 178} and live.get(
            "wine_api_drift_window_rows"
        ) == {"": 178}

    wait_for(all_measured)
    live = scrape(api)
    assert live["wine_api_live_accuracy"] == {"1": pytest.approx(right / 178)}
    assert max(live["wine_api_feature_drift"].values()) < PSI_MODERATE


def test_nothing_is_exported_before_a_refresh_succeeds_and_predictions_never_wait(
    make_client, registry: InMemoryRegistry, good_model, training, tmp_path: Path, sample
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")  # the log's folder cannot be created under it
    registry.register(ModelFiles(good_model, TrainingRanges.of(training[list(FEATURE_NAMES)])))
    api = make_client(
        WINE_MONITORING_DB_URL=f"sqlite:///{blocked / 'monitoring.db'}",
        WINE_MONITORING_REFRESH_SECONDS=0.05,
    )
    wait_for(lambda: api.get("/readyz").status_code == 200)
    wait_for(lambda: scrape(api)[FAILURES][""] >= 2)
    assert api.post("/predict", json=sample).status_code == 200
    live = scrape(api)
    assert not set(LIVE) & set(live)


def test_a_failing_log_keeps_the_last_figures_and_counts_the_failures(
    live_app, log_db: Engine, wine
) -> None:
    log_rows(log_db, some_wines(wine, 4), "1", [0] * 4, [0, 0, 1, 1])
    api = live_app()
    before = refreshed_after(api, -math.inf)
    assert before["wine_api_live_accuracy"] == {"1": 0.5}
    with log_db.begin() as connection:
        connection.execute(sa.text("DROP TABLE feedback"))
    wait_for(lambda: scrape(api)[FAILURES][""] >= 1)
    failing = scrape(api)
    wait_for(lambda: scrape(api)[FAILURES][""] >= failing[FAILURES][""] + 2)
    after = scrape(api)
    assert after["wine_api_live_accuracy"] == {"1": 0.5}
    stamp = "wine_api_monitoring_last_refresh_timestamp_seconds"
    assert after[stamp] == failing[stamp]  # no refresh succeeded meanwhile
