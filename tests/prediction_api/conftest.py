"""Fixtures of the prediction API's unit tests: real small models and an app around them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from prediction_api.app import create_app
from prediction_api.metrics import ApiMetrics
from prediction_api.reference import ReferenceStats, load_reference_stats
from prediction_api.settings import ApiSettings
from tests.prediction_api.registry import InMemoryRegistry
from wine_mlops.features import FEATURE_NAMES, TARGET, load_wine_frame
from wine_mlops.waiting import wait_until


@pytest.fixture(scope="session")
def wine():
    """scikit-learn's wine data as one frame (features and target)."""
    return load_wine_frame()


@pytest.fixture(scope="session")
def good_model(wine) -> Pipeline:
    """A real, accurate classifier fitted on the wine data (with feature names)."""
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(
        wine[list(FEATURE_NAMES)], wine[TARGET]
    )


@pytest.fixture(scope="session")
def dummy_model(wine) -> DummyClassifier:
    """A real but useless classifier: always the most frequent class (class 1)."""
    return DummyClassifier(strategy="most_frequent").fit(wine[list(FEATURE_NAMES)], wine[TARGET])


@pytest.fixture(scope="session")
def reference() -> ReferenceStats:
    return load_reference_stats()


@pytest.fixture
def registry() -> InMemoryRegistry:
    return InMemoryRegistry()


def wait_for(condition: Callable[[], object], timeout: float = 10.0) -> None:
    """Waits until ``condition()`` is truthy (for the watcher thread to act)."""
    wait_until(condition, "the watcher to act", timeout=timeout, interval=0.01)


def problem(answer: httpx.Response, status: int) -> dict[str, Any]:
    """The body of an error answer, checked to be an RFC 9457 problem document of ``status``."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = answer.json()
    assert body["type"] == "about:blank"
    assert body["status"] == status
    assert isinstance(body["title"], str)
    assert body["title"]
    assert isinstance(body["detail"], str)
    assert body["message"] == body["detail"]  # kept for clients of the earlier shape
    assert ("errors" in body) == (status == 422)
    return body


@pytest.fixture
def make_client(
    registry: InMemoryRegistry, reference: ReferenceStats
) -> Iterator[Callable[..., TestClient]]:
    """Builds an app on the in-memory registry and runs it (lifespan and watcher included)."""
    clients: list[TestClient] = []

    def make(raise_server_exceptions: bool = True, **overrides: object) -> TestClient:
        settings = ApiSettings.model_validate(
            {
                "WINE_WATCH_INTERVAL_SECONDS": 0.05,
                "WINE_MLFLOW_CONNECT_MAX_BACKOFF": 0.05,
                **overrides,
            }
        )
        app = create_app(settings, source=registry, reference=reference, metrics=ApiMetrics())
        client = TestClient(app, raise_server_exceptions=raise_server_exceptions)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client, registry: InMemoryRegistry, good_model) -> TestClient:
    """A running app serving ``good_model`` as version 1."""
    registry.register(good_model)
    api = make_client()
    wait_for(lambda: api.get("/readyz").status_code == 200)
    return api


@pytest.fixture
def sample(wine) -> dict[str, float]:
    """The first wine of the data set as a request body (a class-0 wine)."""
    return {name: float(wine[name].iloc[0]) for name in FEATURE_NAMES}
