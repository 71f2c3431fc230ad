"""Out-of-range warnings: answers name every feature outside the served version's training
range (the ranges logged with that version), and the warnings are counted."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from prediction_api.ranges import RangeCheck
from tests.prediction_api.conftest import wait_for
from tests.prediction_api.registry import InMemoryRegistry
from tests.prediction_api.test_metrics import scrape
from wine_mlops.features import FEATURE_NAMES
from wine_mlops.model_files import ModelFiles
from wine_mlops.training_ranges import TrainingRanges

ALCOHOL_MIX_UP = {
    "feature": "alcohol",
    "value": 0.132,
    "training_min": 11.03,
    "training_max": 14.83,
    "message": "alcohol 0.132 is outside the training range 11.03 to 14.83",
}


@pytest.fixture(scope="module")
def ranges(wine) -> TrainingRanges:
    """The ranges of every wine (alcohol 11.03 to 14.83, proline 278 to 1680)."""
    return TrainingRanges.of(wine[list(FEATURE_NAMES)])


@pytest.fixture
def api(make_client, registry: InMemoryRegistry, good_model, ranges) -> TestClient:
    """An app serving ``good_model`` as version 1, with the ranges logged with it."""
    registry.register(ModelFiles(good_model, ranges))
    client = make_client()
    wait_for(lambda: client.get("/readyz").status_code == 200)
    return client


def test_a_unit_mix_up_is_named_in_the_answer(api: TestClient, sample) -> None:
    answer = api.post("/predict", json={**sample, "alcohol": 0.132})
    assert answer.status_code == 200
    assert answer.json()["warnings"] == [ALCOHOL_MIX_UP]
    assert answer.json()["class_name"]  # still answered: a warning, not an error


def test_a_wine_inside_every_range_gets_an_empty_list(api: TestClient, sample) -> None:
    assert api.post("/predict", json=sample).json()["warnings"] == []


def test_every_feature_outside_is_named_in_feature_order(api: TestClient, sample) -> None:
    wine = {**sample, "proline": 2000.0, "alcohol": 0.132, "hue": 0.1}
    warnings = api.post("/predict", json=wine).json()["warnings"]
    assert [w["feature"] for w in warnings] == ["alcohol", "hue", "proline"]
    assert warnings[1]["message"] == "hue 0.1 is outside the training range 0.48 to 1.71"
    assert warnings[2]["message"] == "proline 2000 is outside the training range 278 to 1680"


def test_batch_items_carry_their_own_warnings_and_all_are_counted(api: TestClient, sample) -> None:
    wines = [{**sample, "alcohol": 0.132}, sample, {**sample, "alcohol": 15.5, "ash": 0.5}]
    answers = api.post("/predict/batch", json=wines).json()
    assert answers[0]["warnings"] == [ALCOHOL_MIX_UP]
    assert answers[1]["warnings"] == []
    assert [w["feature"] for w in answers[2]["warnings"]] == ["alcohol", "ash"]
    samples = scrape(api)
    counted = {
        (dict(labels)["feature"], dict(labels)["side"]): value
        for (name, labels), value in samples.items()
        if name == "wine_api_input_out_of_range_total"
    }
    # every feature and side exported from the start
    assert set(counted) == {(f, side) for f in FEATURE_NAMES for side in ("below", "above")}
    assert counted[("alcohol", "below")] == 1
    assert counted[("alcohol", "above")] == 1
    assert counted[("ash", "below")] == 1
    assert sum(counted.values()) == 3
    # one fact, one counter: no second count against another reference
    assert not [name for (name, _) in samples if "training_range" in name]


def test_plausible_values_beyond_the_training_range_are_counted_by_side(
    api: TestClient, sample
) -> None:
    # proline 2000 mg/L is plausible but above the training maximum (1680); hue 0.1 below.
    api.post("/predict", json={**sample, "proline": 2000.0, "hue": 0.1})
    api.post("/predict", json={**sample, "proline": 3000.0})
    samples = scrape(api)
    name = "wine_api_input_out_of_range_total"
    assert samples[(name, (("feature", "proline"), ("side", "above")))] == 2
    assert samples[(name, (("feature", "hue"), ("side", "below")))] == 1
    assert samples[(name, (("feature", "proline"), ("side", "below")))] == 0


def test_the_legacy_query_keeps_a_bare_class_id_and_warns_in_a_header(
    api: TestClient, sample
) -> None:
    query = {f"feature_{i}": str(sample[n]) for i, n in enumerate(FEATURE_NAMES, start=1)}
    quiet = api.get("/predict/", params=query)
    assert quiet.text == "0"
    assert "wine-warnings" not in quiet.headers
    mixed_up = api.get("/predict/", params={**query, "feature_1": "0.132"})
    assert mixed_up.status_code == 200
    assert mixed_up.text.isdigit()
    assert mixed_up.headers["wine-warnings"] == ALCOHOL_MIX_UP["message"]


def test_the_model_reports_the_ranges_its_answers_warn_by(api: TestClient) -> None:
    ranges = api.get("/model").json()["training_ranges"]
    assert list(ranges) == list(FEATURE_NAMES)
    assert ranges["alcohol"] == {"min": 11.03, "max": 14.83}


def test_the_ranges_are_the_served_versions_not_the_reference_datas(
    make_client, registry: InMemoryRegistry, good_model, wine, sample
) -> None:
    # a version trained on wines up to 1500 mg/L proline: 1600 is outside *its* range,
    # although scikit-learn's data (the form's reference) reaches 1680
    trained_on = wine[wine["proline"] <= 1500][list(FEATURE_NAMES)]
    registry.register(ModelFiles(good_model, TrainingRanges.of(trained_on)))
    api = make_client()
    wait_for(lambda: api.get("/readyz").status_code == 200)
    (warning,) = api.post("/predict", json={**sample, "proline": 1600.0}).json()["warnings"]
    assert warning["training_max"] == float(trained_on["proline"].max()) <= 1500


def test_a_version_without_ranges_never_warns_and_says_so(
    client: TestClient, sample: dict[str, float]
) -> None:
    answer = client.post("/predict", json={**sample, "alcohol": 0.132}).json()
    assert answer["warnings"] == []
    assert client.get("/model").json()["training_ranges"] is None
    name = "wine_api_input_out_of_range_total"
    counted = [value for (found, _), value in scrape(client).items() if found == name]
    assert counted == [0.0] * 2 * len(FEATURE_NAMES)


def test_a_new_version_warns_by_its_own_ranges(
    api: TestClient, registry: InMemoryRegistry, good_model, wine, sample
) -> None:
    assert api.post("/predict", json={**sample, "alcohol": 11.0}).json()["warnings"]
    lower = wine[list(FEATURE_NAMES)].assign(alcohol=wine["alcohol"] - 1.0)
    registry.register(ModelFiles(good_model, TrainingRanges.of(lower)))  # down to 10.03
    wait_for(lambda: api.get("/model").json()["model_version"] == "2")
    assert api.post("/predict", json={**sample, "alcohol": 11.0}).json()["warnings"] == []


def test_the_check_is_vectorised_over_rows_and_builds_warnings_only_for_values_outside(
    ranges: TrainingRanges, wine
) -> None:
    check = RangeCheck.of(ranges)
    rows = wine[list(FEATURE_NAMES)].to_numpy(dtype=np.float64, copy=True)
    assert check.outside(rows) is None  # the data the ranges come from is inside them
    rows[5, 0] = 0.132
    rows[7, 12] = 1681.0
    mask = check.outside(rows)
    assert mask is not None
    assert mask.sum() == 2
    found = check.warnings(rows, mask)
    assert len(found) == len(rows)
    assert [w.model_dump() for w in found[5]] == [ALCOHOL_MIX_UP]
    assert [w.feature for w in found[7]] == ["proline"]
    assert sum(len(w) for w in found) == 2
