"""Bad input gets a clear 4xx naming the field and the problem, never a 500."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.prediction_api.conftest import problem
from wine_mlops.features import FEATURE_NAMES


def post_raw(
    client: TestClient, path: str, body: bytes | str, content_type: str = "application/json"
):
    return client.post(path, content=body, headers={"content-type": content_type})


def legacy_query(sample: dict[str, float]) -> dict[str, str]:
    return {f"feature_{i}": str(sample[name]) for i, name in enumerate(FEATURE_NAMES, start=1)}


def test_a_valid_wine_is_classified(client: TestClient, sample: dict[str, float]) -> None:
    answer = client.post("/predict", json=sample)
    assert answer.status_code == 200
    body = answer.json()
    assert body["class_id"] == 0
    assert body["class_name"] == "Cultivar 1"
    assert set(body["probabilities"]) == {"Cultivar 1", "Cultivar 2", "Cultivar 3"}
    assert sum(body["probabilities"].values()) == pytest.approx(1.0)
    assert body["model_name"] == "wine-classifier"
    assert body["model_version"] == "1"


@pytest.mark.parametrize(
    ("change", "status", "expected"),
    [
        ({"alcohol": None}, 422, "alcohol: must be a number, got None"),
        ({"alcohol": "13.2"}, 422, "alcohol: must be a number, got '13.2'"),
        ({"alcohol": "abc"}, 422, "alcohol: must be a number, got 'abc'"),
        ({"alcohol": True}, 422, "alcohol: must be a number, got True"),
        ({"alcohol": [13.2]}, 422, "alcohol: must be a number, got [13.2]"),
        ({"hue": -0.5}, 422, "hue: must not be negative, got -0.5"),
        ({"magnesium": 5000}, 422, "magnesium: 5000 is above 1000.0 mg/L"),
        ({"proline": 1e9}, 422, "proline: 1000000000.0 is above 10000.0 mg/L"),
        ({"colour": 1.0}, 422, "colour: unknown field; expected only the 13 features"),
    ],
)
def test_each_bad_field_is_named_with_its_problem(
    client: TestClient, sample: dict[str, float], change: dict, status: int, expected: str
) -> None:
    answer = client.post("/predict", json={**sample, **change})
    body = problem(answer, status)
    assert expected in body["detail"]
    field = next(iter(change))
    assert [d["field"] for d in body["errors"]] == [field]
    assert expected in body["errors"][0]["problem"]


def test_a_missing_field_is_named(client: TestClient, sample: dict[str, float]) -> None:
    del sample["flavanoids"]
    answer = client.post("/predict", json=sample)
    body = problem(answer, 422)
    assert body["title"] == "Unprocessable Content"
    assert body["detail"] == "flavanoids: required field is missing"
    assert body["errors"] == [
        {
            "field": "flavanoids",
            "problem": "flavanoids: required field is missing",
            "type": "missing",
        }
    ]


@pytest.mark.parametrize(
    ("literal", "shown"),
    [("NaN", "NaN"), ("Infinity", "Infinity"), ("-Infinity", "-Infinity"), ("1e999", "Infinity")],
)
def test_nan_and_infinity_are_rejected(
    client: TestClient, sample: dict[str, float], literal: str, shown: str
) -> None:
    body = json.dumps(sample).replace(f'"ash": {sample["ash"]}', f'"ash": {literal}')
    answer = post_raw(client, "/predict", body)
    assert problem(answer, 422)["detail"] == f"ash: must be a finite number, got {shown}"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("{", "body is not valid JSON"),
        ("[1, 2]", "body: must be a JSON object with the 13 features"),
        ('"wine"', "body: must be a JSON object with the 13 features"),
        ("{}", "alcohol: required field is missing"),
    ],
)
def test_a_malformed_body_gets_a_clear_422(client: TestClient, body: str, expected: str) -> None:
    answer = post_raw(client, "/predict", body)
    assert expected in problem(answer, 422)["detail"]


def test_an_empty_body_is_rejected(client: TestClient) -> None:
    answer = post_raw(client, "/predict", b"")
    assert "required field is missing" in problem(answer, 422)["detail"]


def test_many_problems_are_all_listed_and_summarised(client: TestClient) -> None:
    answer = client.post("/predict", json={"alcohol": -1})
    body = problem(answer, 422)
    assert len(body["errors"]) == 13  # the negative alcohol and 12 missing fields
    assert body["detail"].startswith("alcohol: must not be negative, got -1")
    assert body["detail"].endswith("and 8 more problem(s)")


@pytest.mark.parametrize(
    ("content_type", "shown"),
    [
        ("text/plain", "'text/plain'"),
        ("application/x-www-form-urlencoded", "'application/x-www-form-urlencoded'"),
        ("", "no Content-Type"),
    ],
)
def test_a_body_that_is_not_json_gets_415(
    client: TestClient, sample: dict[str, float], content_type: str, shown: str
) -> None:
    answer = client.post(
        "/predict", content=json.dumps(sample), headers={"content-type": content_type}
    )
    body = problem(answer, 415)
    assert body["title"] == "Unsupported Media Type"
    assert body["detail"] == f"the body must be JSON (Content-Type: application/json), got {shown}"


def test_json_with_a_charset_is_accepted(client: TestClient, sample: dict[str, float]) -> None:
    answer = post_raw(client, "/predict", json.dumps(sample), "application/json; charset=utf-8")
    assert answer.status_code == 200


def test_a_body_over_the_size_limit_gets_413(make_client, registry, good_model) -> None:
    registry.register(good_model)
    api = make_client(WINE_MAX_BODY_BYTES=2048)
    answer = post_raw(api, "/predict", b" " * 5000)
    body = problem(answer, 413)
    assert body["title"] == "Content Too Large"
    assert body["detail"] == "the body has 5000 bytes; at most 2048"


def test_a_chunked_body_over_the_limit_gets_413(make_client, registry, good_model) -> None:
    registry.register(good_model)
    api = make_client(WINE_MAX_BODY_BYTES=2048)

    def chunks():  # no Content-Length: the limit is enforced while the body streams in
        for _ in range(10):
            yield b" " * 1000

    answer = api.post("/predict", content=chunks(), headers={"content-type": "application/json"})
    assert problem(answer, 413)["detail"] == "the body is larger than 2048 bytes"


def test_a_batch_is_classified_in_order(client: TestClient, wine) -> None:
    rows = [{name: float(wine[name].iloc[i]) for name in FEATURE_NAMES} for i in (0, 100, 170)]
    answer = client.post("/predict/batch", json=rows)
    assert answer.status_code == 200
    assert [a["class_id"] for a in answer.json()] == [0, 1, 2]


def test_an_empty_batch_gets_422(client: TestClient) -> None:
    answer = client.post("/predict/batch", json=[])
    assert problem(answer, 422)["detail"] == "body: the batch is empty; send 1 to 1000 wines"


def test_an_oversized_batch_gets_422(client: TestClient, sample: dict[str, float]) -> None:
    answer = client.post("/predict/batch", json=[sample] * 1001)
    assert problem(answer, 422)["detail"] == (
        "body: the batch has 1001 wines; at most 1000 are allowed per request"
    )


def test_a_bad_row_of_a_batch_is_named_by_position(
    client: TestClient, sample: dict[str, float]
) -> None:
    answer = client.post("/predict/batch", json=[sample, {**sample, "ash": -2}])
    body = problem(answer, 422)
    assert body["detail"] == "[1].ash: must not be negative, got -2"
    assert [e["field"] for e in body["errors"]] == ["[1].ash"]


def test_a_batch_must_be_an_array(client: TestClient, sample: dict[str, float]) -> None:
    answer = client.post("/predict/batch", json=sample)
    assert problem(answer, 422)["detail"] == "body: must be a JSON array of wine objects"


def test_the_legacy_query_answers_the_class_id_as_text(
    client: TestClient, sample: dict[str, float]
) -> None:
    answer = client.get("/predict/", params=legacy_query(sample))
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    assert answer.text == "0"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"feature_4": "abc"}, "feature_4 (alcalinity_of_ash): must be a number, got 'abc'"),
        ({"feature_1": "nan"}, "feature_1 (alcohol): must be a finite number, got 'nan'"),
        ({"feature_13": "-3"}, "feature_13 (proline): must not be negative, got '-3'"),
        ({"feature_14": "1"}, "feature_14: unknown parameter; expected only feature_1 to"),
    ],
)
def test_the_legacy_query_is_validated_the_same_way(
    client: TestClient, sample: dict[str, float], change: dict[str, str], expected: str
) -> None:
    answer = client.get("/predict/", params={**legacy_query(sample), **change})
    body = problem(answer, 422)
    assert expected in body["detail"]
    assert [e["field"] for e in body["errors"]] == list(change)


def test_the_legacy_query_names_a_missing_feature(
    client: TestClient, sample: dict[str, float]
) -> None:
    query = legacy_query(sample)
    del query["feature_7"]
    answer = client.get("/predict/", params=query)
    assert problem(answer, 422)["detail"] == "feature_7 (flavanoids): required field is missing"


# The JSON routes validate a body from its raw bytes and fall back to FastAPI's parsing for
# any body that does not pass: the cases below are those where the two parsers differ (or
# might), so the answers must stay what FastAPI's json.loads and validation give.


def without_ids(body: Any) -> Any:
    """An answer (or a batch's answers) without the per-answer prediction id."""
    if isinstance(body, list):
        return [without_ids(item) for item in body]
    return {key: value for key, value in body.items() if key != "prediction_id"}


@pytest.mark.parametrize("path", ["/predict", "/predict/batch"])
@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-32"])
def test_json_in_another_unicode_encoding_is_classified_alike(
    client: TestClient, sample: dict[str, float], path: str, encoding: str
) -> None:
    text = json.dumps(sample if path == "/predict" else [sample, sample])
    plain = post_raw(client, path, text.encode())
    answer = post_raw(client, path, text.encode(encoding))
    assert answer.status_code == 200, answer.text
    assert without_ids(answer.json()) == without_ids(plain.json())


def test_a_repeated_field_counts_with_its_last_value(
    client: TestClient, sample: dict[str, float]
) -> None:
    text = json.dumps(sample)
    first_bad = post_raw(client, "/predict", text.replace("{", '{"ash": -1, ', 1))
    assert first_bad.status_code == 200, first_bad.text
    assert without_ids(first_bad.json()) == without_ids(client.post("/predict", json=sample).json())
    last_bad = post_raw(client, "/predict", text[:-1] + ', "ash": -1}')
    assert problem(last_bad, 422)["detail"] == "ash: must not be negative, got -1"


def test_a_whole_number_and_an_escaped_field_name_are_read_as_json_says(
    client: TestClient, sample: dict[str, float]
) -> None:
    text = json.dumps({**sample, "ash": 2.0})
    expected = without_ids(post_raw(client, "/predict", text).json())
    for variant in (text.replace('"ash": 2.0', '"ash": 2'), text.replace('"ash"', '"\\u0061sh"')):
        answer = post_raw(client, "/predict", variant)
        assert answer.status_code == 200, answer.text
        assert without_ids(answer.json()) == expected


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        ("/predict", "{} x", "body is not valid JSON (Extra data at position 3)"),
        ("/predict/batch", "[] []", "body is not valid JSON (Extra data at position 3)"),
        ("/predict/batch", '[{"ash": 1', "body is not valid JSON (Expecting ',' delimiter at "
         "position 10)"),
        ("/predict", "   ", "body is not valid JSON (Expecting value at position 3)"),
    ],
)  # fmt: skip
def test_a_body_that_is_not_one_json_value_gets_422_with_the_position(
    client: TestClient, path: str, body: str, expected: str
) -> None:
    answer = post_raw(client, path, body)
    problem_body = problem(answer, 422)
    assert problem_body["detail"] == expected
    assert [e["type"] for e in problem_body["errors"]] == ["json_invalid"]
