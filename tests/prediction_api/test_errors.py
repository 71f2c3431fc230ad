"""One error shape, in the order HTTP expects: 404, 405, then 415, 413, 422; all documented.

Every error answer is an RFC 9457 problem document (``application/problem+json``); the
OpenAPI document declares each status and media type a route can answer.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from prediction_api.schemas import FEATURE_SPECS
from prediction_api.settings import ApiSettings
from tests.prediction_api.conftest import problem, wait_for
from tests.prediction_api.registry import InMemoryRegistry
from wine_mlops.features import FEATURE_NAMES, TARGET

NOT_JSON = {"content-type": "text/plain"}


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/no-such-page"), ("POST", "/no-such-page"), ("GET", "/static/no-such-file.js")],
)
def test_an_unknown_address_gets_a_404_problem(client: TestClient, method: str, path: str) -> None:
    answer = client.request(method, path, content=b"not json", headers=NOT_JSON)
    body = problem(answer, 404)
    assert body["title"] == "Not Found"
    assert body["detail"] == "nothing at this address; the endpoints are listed at /docs"


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/model", "GET"),
        ("PUT", "/readyz", "GET"),
        ("PUT", "/healthz", "GET"),
        ("PUT", "/metrics", "GET"),
        ("PUT", "/features", "GET"),
        ("POST", "/healthz", "GET"),
        ("DELETE", "/predict", "POST"),
        ("GET", "/predict/batch", "POST"),
        ("POST", "/predict/", "GET"),
    ],
)
def test_a_method_the_endpoint_does_not_take_gets_405_before_its_body_is_judged(
    client: TestClient, method: str, path: str, allowed: str
) -> None:
    answer = client.request(method, path, content=b"x" * 5000, headers=NOT_JSON)
    body = problem(answer, 405)
    assert answer.headers["allow"] == allowed
    assert body["detail"] == f"{method} is not allowed here; allowed: {allowed}"


def test_a_body_that_is_neither_json_nor_small_gets_415_first(
    make_client, registry: InMemoryRegistry, good_model
) -> None:
    registry.register(good_model)
    api = make_client(WINE_MAX_BODY_BYTES=2048)
    answer = api.post("/predict", content=b"x" * 5000, headers=NOT_JSON)
    assert problem(answer, 415)["detail"] == (
        "the body must be JSON (Content-Type: application/json), got 'text/plain'"
    )


def test_a_json_body_too_large_gets_413_before_its_content_is_judged(
    make_client, registry: InMemoryRegistry, good_model, sample: dict[str, float]
) -> None:
    registry.register(good_model)
    api = make_client(WINE_MAX_BODY_BYTES=2048)
    bad_rows = json.dumps([{**sample, "ash": -1}] * 20)  # invalid, and over 2048 bytes
    answer = api.post(
        "/predict/batch", content=bad_rows, headers={"content-type": "application/json"}
    )
    assert problem(answer, 413)["detail"] == f"the body has {len(bad_rows)} bytes; at most 2048"


def test_the_largest_batch_the_schema_admits_fits_the_default_body_limit(
    client: TestClient,
) -> None:
    """1,000 wines whose every value has the longest JSON form: accepted, not a 413."""
    wine = {name: 1.2345678901234567e-05 for name in FEATURE_NAMES}
    body = json.dumps([wine] * 1000)
    assert len(body) < ApiSettings().max_body_bytes
    answer = client.post(
        "/predict/batch", content=body, headers={"content-type": "application/json"}
    )
    assert answer.status_code == 200
    assert len(answer.json()) == 1000


def test_json_of_another_application_type_is_accepted(
    client: TestClient, sample: dict[str, float]
) -> None:
    answer = client.post(
        "/predict", content=json.dumps(sample), headers={"content-type": "application/vnd.x+json"}
    )
    assert answer.status_code == 200
    assert answer.json()["class_id"] == 0


def test_a_body_that_is_not_utf8_gets_a_400_problem(client: TestClient) -> None:
    answer = client.post(
        "/predict", content=b'{"alcohol": "\xff"}', headers={"content-type": "application/json"}
    )
    assert problem(answer, 400)["detail"] == "There was an error parsing the body"


def _refuse_strong_wines(rows: Any) -> Any:
    if np.asarray(rows)[:, 0].max() > 29:
        raise ValueError("alcohol above 29 % vol breaks this model")
    return rows


def test_an_unexpected_failure_gets_a_500_problem(
    make_client, registry: InMemoryRegistry, wine, sample: dict[str, float]
) -> None:
    """A real model that fails on some rows: the client gets a problem, not a traceback."""
    fragile = make_pipeline(
        FunctionTransformer(_refuse_strong_wines), StandardScaler(), LogisticRegression()
    ).fit(wine[list(FEATURE_NAMES)].to_numpy(), wine[TARGET])
    registry.register(fragile)
    api = make_client(raise_server_exceptions=False)
    wait_for(lambda: api.get("/readyz").status_code == 200)
    assert api.post("/predict", json=sample).status_code == 200
    answer = api.post("/predict", json={**sample, "alcohol": 29.5})
    body = problem(answer, 500)
    assert body["title"] == "Internal Server Error"
    assert body["detail"] == "an unexpected error; the API log has the details"
    assert "alcohol above 29" not in answer.text


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


def test_every_error_a_route_can_answer_is_documented_as_a_problem(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    documented = {
        f"{method} {path}": sorted(int(status) for status in operation["responses"])
        for method, path, operation in _operations(document)
    }
    assert documented == {
        "GET /healthz": [200],
        "GET /readyz": [200, 503],
        "POST /predict": [200, 400, 413, 415, 422, 503],
        "POST /predict/batch": [200, 400, 413, 415, 422, 503],
        "GET /predict/": [200, 422, 503],
        "POST /feedback": [200, 400, 404, 409, 413, 415, 422, 503],
        "POST /feedback/batch": [200, 400, 404, 409, 413, 415, 422, 503],
        "GET /model": [200, 503],
        "GET /features": [200],
        "GET /metrics": [200],
    }
    for _, _, operation in _operations(document):
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                schema = "InvalidInputProblem" if status == "422" else "Problem"
                assert response["content"] == {
                    "application/problem+json": {
                        "schema": {"$ref": f"#/components/schemas/{schema}"}
                    }
                }
    problem_schema = document["components"]["schemas"]["Problem"]
    assert set(problem_schema["required"]) == {"type", "title", "status", "detail", "message"}
    invalid = document["components"]["schemas"]["InvalidInputProblem"]
    assert "errors" in invalid["required"]
    metrics = document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == ["text/plain"]  # the answer itself names the format version
    legacy = document["paths"]["/predict/"]["get"]["responses"]["200"]["content"]
    assert list(legacy) == ["text/plain"]


def test_every_limit_is_in_the_schema_of_the_body_and_of_the_legacy_query(
    client: TestClient,
) -> None:
    document = client.get("/openapi.json").json()
    wine = document["components"]["schemas"]["WineFeatures"]
    assert wine["additionalProperties"] is False
    assert wine["required"] == list(FEATURE_NAMES)
    parameters = document["paths"]["/predict/"]["get"]["parameters"]
    assert [p["name"] for p in parameters] == [f"feature_{i}" for i in range(1, 14)]
    for spec, parameter in zip(FEATURE_SPECS, parameters, strict=True):
        for schema in (wine["properties"][spec.name], parameter["schema"]):
            assert schema["type"] == "number"
            assert schema["minimum"] == 0
            assert schema["maximum"] == spec.upper_limit
        assert parameter["required"] is True
    batch = document["paths"]["/predict/batch"]["post"]["requestBody"]["content"]
    assert batch["application/json"]["schema"]["minItems"] == 1
    assert batch["application/json"]["schema"]["maxItems"] == 1000


def test_the_legacy_query_rejects_values_beyond_the_physical_limit(
    client: TestClient, sample: dict[str, float]
) -> None:
    query = {f"feature_{i}": str(sample[n]) for i, n in enumerate(FEATURE_NAMES, start=1)}
    answer = client.get("/predict/", params={**query, "feature_2": "31"})
    body = problem(answer, 422)
    assert body["detail"] == (
        "feature_2 (malic_acid): '31' is above 30.0 g/L, beyond any physically possible value"
    )
