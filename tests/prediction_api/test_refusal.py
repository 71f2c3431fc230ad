"""Refused versions: the previous model keeps serving; logged and counted once; reported.

The refused versions are real booby-trapped model directories, loaded by the real safe
loader; the marker file each trap would create shows that none of them ran.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from prediction_api.metrics import ApiMetrics
from tests.prediction_api.conftest import problem, wait_for
from tests.prediction_api.registry import InMemoryRegistry
from tests.support.model_traps import pickle_trap_dir, save_good_model, skops_trap_dir
from wine_mlops.features import FEATURE_NAMES

SERVING_LOGGER = "prediction_api.serving"


def refused_count(api: TestClient, reason: str) -> float | None:
    metrics: ApiMetrics = api.app.state.metrics  # type: ignore[attr-defined]
    return metrics.registry.get_sample_value("wine_api_model_refused_total", {"reason": reason})


def load_failures(api: TestClient) -> float | None:
    metrics: ApiMetrics = api.app.state.metrics  # type: ignore[attr-defined]
    return metrics.registry.get_sample_value(
        "wine_api_model_loads_total", {"kind": "reload", "result": "failure"}
    )


def refusal_lines(caplog: pytest.LogCaptureFixture, version: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == SERVING_LOGGER
        and r.getMessage().startswith(f"refused wine-classifier version {version} ")
    ]


def test_a_refused_version_never_replaces_the_served_one(
    client: TestClient,
    registry: InMemoryRegistry,
    caplog: pytest.LogCaptureFixture,
    sample: dict[str, float],
    tmp_path: Path,
) -> None:
    caplog.set_level(logging.INFO, logger=SERVING_LOGGER)
    marker = tmp_path / "pickle-ran"
    registry.register(pickle_trap_dir(tmp_path / "trap", marker))  # version 2
    wait_for(lambda: refused_count(client, "format") == 1)
    lookups = registry.lookups
    wait_for(lambda: registry.lookups >= lookups + 5)  # several more watch intervals

    answer = client.post("/predict", json=sample)
    assert answer.status_code == 200
    assert answer.json()["model_version"] == "1"
    assert client.get("/readyz").status_code == 200
    model = client.get("/model").json()
    assert model["model_version"] == "1"
    assert model["refused"] == {
        "version": "2",
        "kind": "format",
        "reason": "serialization format 'pickle' is not accepted; only 'skops' models are "
        "loaded (pickle would run code from the model file)",
    }
    assert not marker.exists()

    assert registry.loads.count("2") == 1  # not downloaded again at every check
    assert refused_count(client, "format") == 1
    assert load_failures(client) == 1
    (line,) = refusal_lines(caplog, "2")
    assert line.levelno == logging.WARNING
    assert line.exc_info is None  # one line, no traceback
    assert "version 1 keeps serving" in line.getMessage()


def test_after_a_refusal_the_next_good_version_is_served_and_the_refusal_cleared(
    client: TestClient,
    registry: InMemoryRegistry,
    caplog: pytest.LogCaptureFixture,
    good_model,
    wine,
    sample: dict[str, float],
    tmp_path: Path,
) -> None:
    caplog.set_level(logging.INFO, logger=SERVING_LOGGER)
    marker = tmp_path / "skops-ran"
    registry.register(skops_trap_dir(tmp_path / "trap", marker))  # version 2
    wait_for(lambda: client.get("/model").json()["refused"] is not None)
    refused = client.get("/model").json()["refused"]
    assert (refused["version"], refused["kind"]) == ("2", "untrusted_types")
    assert "tests.support.model_traps.SkopsTrap" in refused["reason"]

    features = wine[list(FEATURE_NAMES)].head(5)
    registry.register(save_good_model(good_model, tmp_path / "good", features))  # version 3
    wait_for(lambda: client.get("/model").json()["model_version"] == "3")
    assert client.get("/model").json()["refused"] is None
    assert client.post("/predict", json=sample).json()["class_id"] == 0

    registry.aliased = "2"  # pointed back at the trap: refused again, once more
    wait_for(lambda: refused_count(client, "untrusted_types") == 2)
    assert client.post("/predict", json=sample).json()["model_version"] == "3"
    assert len(refusal_lines(caplog, "2")) == 2
    assert not marker.exists()


def test_a_refused_first_version_leaves_the_api_not_ready_with_the_reason(
    make_client, registry: InMemoryRegistry, sample: dict[str, float], tmp_path: Path
) -> None:
    marker = tmp_path / "pickle-ran"
    registry.register(pickle_trap_dir(tmp_path / "trap", marker))
    api = make_client()
    metrics: ApiMetrics = api.app.state.metrics
    wait_for(lambda: refused_count(api, "format") == 1)
    answer = api.post("/predict", json=sample)
    assert problem(answer, 503)["detail"] == (
        "no model loaded yet (models:/wine-classifier@champion): version 1 was refused: "
        "serialization format 'pickle' is not accepted; only 'skops' models are loaded "
        "(pickle would run code from the model file); retry shortly"
    )
    assert api.get("/model").status_code == 503
    initial_failures = metrics.registry.get_sample_value(
        "wine_api_model_loads_total", {"kind": "initial", "result": "failure"}
    )
    assert initial_failures == 1
    assert not marker.exists()


def test_the_503_answer_names_no_host_url_or_exception_text(
    make_client, registry: InMemoryRegistry, good_model, sample: dict[str, float]
) -> None:
    internal = (
        "HTTPConnectionPool(host='mlflow-server', port=5000): Max retries exceeded with url: "
        "/api/2.0/mlflow/registered-models/alias (Caused by NewConnectionError)"
    )
    registry.lookup_error = ConnectionError(internal)
    api = make_client()
    store = api.app.state.store
    wait_for(lambda: store.last_error is not None)
    assert "mlflow-server" in store.last_error  # the detail is kept for the log
    for path in ("/readyz", "/model"):
        answer = api.get(path)
        assert problem(answer, 503)["detail"] == (
            "no model loaded yet (models:/wine-classifier@champion): the model registry "
            "cannot be reached; retry shortly"
        )

    registry.lookup_error = None
    registry.register(good_model)
    registry.broken.add("1")  # the download fails: retried, and its error stays internal
    wait_for(
        lambda: (
            store.last_error == "loading version 1 failed: artifact download of version 1 failed"
        )
    )
    answer = api.post("/predict", json=sample)
    assert problem(answer, 503)["detail"] == (
        "no model loaded yet (models:/wine-classifier@champion): loading version 1 failed; "
        "retry shortly"
    )
