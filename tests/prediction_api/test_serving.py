"""Model lifecycle: readiness, the first load, hot swaps, failed loads, registry outages."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sklearn.dummy import DummyClassifier

from prediction_api.metrics import ApiMetrics
from prediction_api.predictor import Predictor
from prediction_api.serving import ModelStore, VersionRef, build_served_model
from prediction_api.settings import ApiSettings
from tests.prediction_api.conftest import problem, wait_for
from tests.prediction_api.registry import InMemoryRegistry
from wine_mlops.features import CLASS_NAMES, FEATURE_NAMES


def version_served(api: TestClient) -> str:
    return api.get("/model").json()["model_version"]


def test_the_api_is_live_at_once_and_ready_only_with_a_model(
    make_client, registry: InMemoryRegistry, good_model, sample: dict[str, float]
) -> None:
    api = make_client()  # the registry has no champion yet
    assert api.get("/healthz").status_code == 200
    wait_for(lambda: registry.aliased is None and api.get("/readyz").status_code == 503)
    not_ready = api.post("/predict", json=sample)
    assert not_ready.headers["retry-after"] == "5"
    assert problem(not_ready, 503)["detail"] == (
        "no model loaded yet (models:/wine-classifier@champion): the alias is not set in the "
        "registry (no model trained yet?); retry shortly"
    )
    assert api.get("/model").status_code == 503

    registry.register(good_model)  # training has run: the watcher picks the champion up
    wait_for(lambda: api.get("/readyz").status_code == 200)
    assert api.get("/readyz").json()["model_version"] == "1"
    assert api.post("/predict", json=sample).json()["class_name"] == "Cultivar 1"


def test_a_new_champion_is_swapped_in_without_restart(
    client: TestClient, registry: InMemoryRegistry, dummy_model, sample: dict[str, float]
) -> None:
    assert client.post("/predict", json=sample).json()["class_id"] == 0  # the good model
    registry.register(dummy_model)  # version 2: always class 1
    wait_for(lambda: version_served(client) == "2")
    answer = client.post("/predict", json=sample).json()
    assert answer["model_version"] == "2"
    assert answer["class_id"] == 1
    assert answer["probabilities"]["Cultivar 2"] == 1.0
    model = client.get("/model").json()
    assert model["source"] == "models:/wine-classifier/2"
    assert model["run_id"] == "run-2"


def test_requests_neither_fail_nor_wait_while_a_new_version_loads(
    client: TestClient, registry: InMemoryRegistry, good_model, sample: dict[str, float]
) -> None:
    registry.gate = threading.Event()  # the download of version 2 blocks until released
    registry.register(good_model)
    wait_for(registry.loading.is_set)
    for _ in range(20):  # served by version 1 while version 2 is being loaded
        answer = client.post("/predict", json=sample)
        assert answer.status_code == 200
        assert answer.json()["model_version"] == "1"
    registry.gate.set()
    wait_for(lambda: version_served(client) == "2")
    assert client.post("/predict", json=sample).json()["model_version"] == "2"


def test_a_failed_load_keeps_the_old_model_and_is_counted(
    client: TestClient, registry: InMemoryRegistry, good_model, sample: dict[str, float]
) -> None:
    metrics: ApiMetrics = client.app.state.metrics  # type: ignore[attr-defined]
    registry.register(good_model)
    registry.broken.add("2")
    wait_for(
        lambda: (
            (
                metrics.registry.get_sample_value(
                    "wine_api_model_loads_total", {"kind": "reload", "result": "failure"}
                )
                or 0
            )
            >= 1
        )
    )
    answer = client.post("/predict", json=sample)
    assert answer.status_code == 200
    assert answer.json()["model_version"] == "1"
    assert client.get("/readyz").status_code == 200
    store = client.app.state.store  # type: ignore[attr-defined]
    assert store.last_error == "loading version 2 failed: artifact download of version 2 failed"

    registry.broken.clear()  # a later check loads it once it can be downloaded
    wait_for(lambda: version_served(client) == "2")


def test_a_model_with_other_features_is_never_swapped_in(
    client: TestClient, registry: InMemoryRegistry, wine, sample: dict[str, float]
) -> None:
    reordered = list(reversed(FEATURE_NAMES))
    wrong = DummyClassifier().fit(wine[reordered], wine["target"])
    registry.register(wrong)
    store = client.app.state.store  # type: ignore[attr-defined]
    wait_for(lambda: store.last_error is not None)
    assert "expects features ['proline'" in store.last_error
    assert client.post("/predict", json=sample).json()["model_version"] == "1"


def test_mlflow_going_away_leaves_serving_intact(
    client: TestClient, registry: InMemoryRegistry, sample: dict[str, float]
) -> None:
    metrics: ApiMetrics = client.app.state.metrics  # type: ignore[attr-defined]
    registry.lookup_error = ConnectionError("connection refused")
    wait_for(
        lambda: (
            (metrics.registry.get_sample_value("wine_api_registry_check_failures_total") or 0) >= 2
        )
    )
    answer = client.post("/predict", json=sample)
    assert answer.status_code == 200
    assert answer.json()["model_version"] == "1"
    assert client.get("/readyz").status_code == 200


def test_concurrent_predictions_always_see_one_complete_model(
    registry: InMemoryRegistry, good_model, dummy_model, reference, wine
) -> None:
    """Readers in threads while the alias flips between two models, many times."""
    store = ModelStore(registry, CLASS_NAMES)
    registry.register(good_model)
    store.refresh()
    predictor = Predictor(store, ApiMetrics(), "models:/wine-classifier@champion")
    rows = wine[list(FEATURE_NAMES)].to_numpy()[:20].tolist()
    expected = {
        "1": good_model.predict(wine[list(FEATURE_NAMES)].iloc[:20]).tolist(),
        "2": [1] * 20,  # the dummy model
    }
    registry.register(dummy_model)
    problems: list[str] = []
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            answers = predictor.answers(rows)
            versions = {a.model_version for a in answers}
            if len(versions) != 1:
                problems.append(f"one batch answered by versions {versions}")
                return
            if [a.class_id for a in answers] != expected[versions.pop()]:
                problems.append("answers do not match the version that claims them")
                return

    readers = [threading.Thread(target=reader) for _ in range(4)]
    for thread in readers:
        thread.start()
    try:
        for flip in range(20):
            registry.aliased = "2" if flip % 2 == 0 else "1"
            assert store.refresh()
            current = store.current
            assert current is not None
            assert current.ref.version == registry.aliased
    finally:
        done.set()
        for thread in readers:
            thread.join()
    assert problems == []


def test_the_served_model_maps_class_ids_to_configured_names(good_model) -> None:
    ref = VersionRef("m", "7", "champion", source="models:/m/7")
    served = build_served_model(good_model, ref, ("Barolo", "Grignolino", "Barbera"))
    assert served.class_labels == ("Barolo", "Grignolino", "Barbera")
    assert served.predict_proba(np.zeros((2, 13))).shape == (2, 3)


def test_class_names_come_from_the_environment(
    make_client, registry: InMemoryRegistry, good_model, sample: dict[str, float]
) -> None:
    registry.register(good_model)
    api = make_client(WINE_CLASS_NAMES="Barolo, Grignolino, Barbera")
    wait_for(lambda: api.get("/readyz").status_code == 200)
    answer = api.post("/predict", json=sample).json()
    assert answer["class_name"] == "Barolo"
    assert list(answer["probabilities"]) == ["Barolo", "Grignolino", "Barbera"]


def test_settings_reject_duplicate_class_names() -> None:
    with pytest.raises(ValueError, match="class names must be distinct"):
        ApiSettings.model_validate({"WINE_CLASS_NAMES": "a,a,b"})


def test_the_model_reports_its_runs_test_metrics_read_once_per_load(
    make_client, registry: InMemoryRegistry, good_model, dummy_model
) -> None:
    registry.register(good_model, metrics={"accuracy": 0.97, "f1_macro": 0.96})
    api = make_client()
    wait_for(lambda: api.get("/readyz").status_code == 200)
    lookups = registry.lookups
    wait_for(lambda: registry.lookups >= lookups + 3)  # several more checks of the alias
    model = api.get("/model").json()
    assert model["metrics"] == {"accuracy": 0.97, "f1_macro": 0.96}
    assert model["model_family"] == "Pipeline"
    assert registry.metric_reads == ["1"]  # read when loaded, not at every check

    registry.register(dummy_model, metrics={"accuracy": 0.4})
    wait_for(lambda: version_served(api) == "2")
    assert api.get("/model").json()["metrics"] == {"accuracy": 0.4}
    assert registry.metric_reads == ["1", "2"]


def test_the_features_carry_their_query_names_ranges_and_labelled_samples(make_client) -> None:
    api = make_client(WINE_CLASS_NAMES="Barolo, Grignolino, Barbera")
    answer = api.get("/features")  # no model needed: the form is built from it
    assert answer.status_code == 200
    catalog = answer.json()
    assert [f["name"] for f in catalog["features"]] == list(FEATURE_NAMES)
    assert [f["query_name"] for f in catalog["features"]] == [f"feature_{i}" for i in range(1, 14)]
    proline = catalog["features"][-1]
    assert (proline["unit"], proline["training_max"], proline["upper_limit"]) == (
        "mg/L",
        1680.0,
        10000.0,
    )
    assert [(s["class_id"], s["class_name"]) for s in catalog["samples"]] == [
        (0, "Barolo"),
        (1, "Grignolino"),
        (2, "Barbera"),
    ]
    assert set(catalog["samples"][0]["values"]) == set(FEATURE_NAMES)
    assert catalog["batch_limit"] == 1000
