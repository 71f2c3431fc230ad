"""The documentation pages and the OpenAPI document's names (the Chromium check of the pages
themselves is in ``tests/integration/test_prediction_api.py``)."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from prediction_api import docs


def test_operations_have_readable_ids_and_every_tag_is_described(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    ids = {
        f"{method.upper()} {path}": operation["operationId"]
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }
    assert ids == {
        "GET /healthz": "healthz",
        "GET /readyz": "readyz",
        "POST /predict": "predict",
        "POST /predict/batch": "predict_batch",
        "GET /predict/": "predict_legacy",
        "POST /feedback": "feedback",
        "POST /feedback/batch": "feedback_batch",
        "GET /model": "model",
        "GET /features": "features",
        "GET /metrics": "prometheus_metrics",
    }
    tags = [tag["name"] for tag in document["tags"]]
    assert tags == ["predictions", "feedback", "model", "operations"]
    assert all(tag["description"] for tag in document["tags"])
    used = {t for item in document["paths"].values() for op in item.values() for t in op["tags"]}
    assert used == set(tags)


def test_body_routes_document_413_and_415_as_problems(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    with_body = {
        f"{method.upper()} {path}": operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if "requestBody" in operation
    }
    assert set(with_body) == {
        "POST /predict",
        "POST /predict/batch",
        "POST /feedback",
        "POST /feedback/batch",
    }
    for name, operation in with_body.items():
        for status in ("413", "415"):
            answer = operation["responses"].get(status)
            assert answer is not None, f"{name} does not document {status}"
            assert answer["description"], (name, status)
            schema = answer["content"]["application/problem+json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/Problem"}, (name, status)
    assert "Problem" in document["components"]["schemas"]


def test_metrics_are_documented_as_plain_text_and_answered_in_prometheus_format(
    client: TestClient,
) -> None:
    document = client.get("/openapi.json").json()
    ok = document["paths"]["/metrics"]["get"]["responses"]["200"]
    assert ok["content"] == {"text/plain": {"schema": {"type": "string"}}}
    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=")
    assert "# TYPE wine_api_" in answer.text


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_pages_load_only_the_apis_own_assets(client: TestClient, page: str) -> None:
    answer = client.get(page)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    assert answer.headers["content-security-policy"] == docs.CSP
    assert "default-src 'self'" in docs.CSP
    assert "://" not in answer.text  # no CDN, no fonts, no favicon from elsewhere
    assets = re.findall(r'(?:src|href)="([^"]+)"', answer.text)
    assert assets
    for asset in assets:
        assert asset.startswith(f"{docs.ASSETS_URL}/")
        loaded = client.get(asset)
        assert loaded.status_code == 200, asset
        assert len(loaded.content) > 1000
    assert "/openapi.json" in answer.text


def test_swagger_ui_asks_no_online_validator(client: TestClient) -> None:
    page = client.get("/docs").text
    assert '"validatorUrl": null' in page
    assert client.get("/docs/oauth2-redirect").status_code == 200


def test_the_docs_are_not_operations_of_the_api(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not [path for path in paths if path.startswith(("/docs", "/redoc"))]
