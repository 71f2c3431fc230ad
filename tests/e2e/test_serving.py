"""Serving in real containers: the prediction API and the MLflow exporter.

Runs after tests/e2e/test_stack.py (see MODULE_ORDER), on the same stack.
"""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree

import mlflow
import pytest
import requests
from mlflow.tracking import MlflowClient

from model_training.data import load_dataset
from tests.e2e.conftest import API, EXPORTER, REPO, Stack
from tests.mlflow_exporter.support import promtool_check, value
from tests.prediction_api.browser import check_form
from wine_mlops.waiting import wait_until

pytestmark = pytest.mark.e2e

MODEL = "wine-classifier"


def _champion(stack: Stack) -> str:
    return MlflowClient(stack.mlflow_url).get_model_version_by_alias(MODEL, "champion").version


def _started_at(stack: Stack, service: str) -> str:
    """When the service's container started: unchanged means not restarted."""
    return stack.inspect(service, "{{.State.StartedAt}}")


def test_api_predicts_every_wine_like_the_champion_offline(stack: Stack) -> None:
    mlflow.set_tracking_uri(stack.mlflow_url)
    data = load_dataset()
    offline = mlflow.sklearn.load_model(f"models:/{MODEL}@champion").predict(data.features)
    rows = data.features.to_dict(orient="records")
    answers = []
    for start in range(0, len(rows), 100):
        response = requests.post(f"{API}/predict/batch", json=rows[start : start + 100], timeout=30)
        assert response.status_code == 200, response.text
        answers += response.json()
    assert [a["class_id"] for a in answers] == [int(c) for c in offline]
    assert {a["model_version"] for a in answers} == {_champion(stack)}
    assert all(abs(sum(a["probabilities"].values()) - 1) < 1e-6 for a in answers)


def test_bad_input_gets_a_clear_4xx(stack: Stack) -> None:
    wine = load_dataset().features.iloc[0].to_dict()
    without_hue = {k: v for k, v in wine.items() if k != "hue"}
    missing = requests.post(f"{API}/predict", json=without_hue, timeout=10)
    assert missing.status_code == 422
    assert "hue" in missing.json()["message"]
    text = requests.post(f"{API}/predict", data="alcohol=13", timeout=10)
    assert text.status_code == 415


def test_the_form_works_in_a_browser(stack: Stack) -> None:
    reports = REPO / "reports"
    reports.mkdir(exist_ok=True)
    screenshot = reports / "e2e-prediction-form.png"
    shown = check_form(API, sample_class_id=1, screenshot=screenshot)
    assert screenshot.read_bytes().startswith(b"\x89PNG")
    assert shown.cultivar == "Cultivar 2"
    assert [label for label, _ in shown.bars] == ["Cultivar 1", "Cultivar 2", "Cultivar 3"]
    assert "alcohol" in shown.invalid_message
    assert shown.external_requests == []


def test_the_exporter_republishes_mlflow_in_valid_exposition(stack: Stack) -> None:
    client = MlflowClient(stack.mlflow_url)
    experiment = client.get_experiment_by_name("wine-classifier")
    assert experiment is not None
    latest = client.search_runs(
        [experiment.experiment_id],
        "attributes.run_name = 'LogisticRegression' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )[0]
    champion = _champion(stack)

    def shows_the_champion_and_mlflow_up() -> bool:
        # mlflow_up is 0 for a refresh after a service restart (the rotated passwords of
        # test_security); the next refresh, 5 s later here, reads MLflow again.
        text = requests.get(f"{EXPORTER}/metrics", timeout=10).text
        version = value(text, "mlflow_model_alias_version", model=MODEL, alias="champion")
        return version == float(champion) and value(text, "mlflow_up") == 1

    wait_until(
        shows_the_champion_and_mlflow_up,
        "the exporter to show the current champion, MLflow up",
        timeout=60,
        interval=1,
    )
    text = requests.get(f"{EXPORTER}/metrics", timeout=10).text
    assert promtool_check(text) == ""
    assert value(text, "mlflow_up") == 1
    exported = value(
        text,
        "mlflow_run_accuracy_ratio",
        experiment="wine-classifier",
        run_name="LogisticRegression",
    )
    assert exported == pytest.approx(latest.data.metrics["accuracy"])


def test_a_new_champion_is_served_without_a_restart(stack: Stack) -> None:
    started = _started_at(stack, "prediction-api")
    before = _champion(stack)
    # Same data and seed: an equally good model, which the rule promotes (at least as good).
    stack.make("train-stack", "TRAIN_ARGS=--candidates LogisticRegression")
    after = _champion(stack)
    assert int(after) > int(before)
    wait_until(
        lambda: requests.get(f"{API}/model", timeout=5).json()["model_version"] == after,
        f"the API to serve v{after}",
        timeout=90,
        interval=1,
    )
    assert _started_at(stack, "prediction-api") == started


def test_predictions_and_metrics_survive_an_mlflow_outage(stack: Stack) -> None:
    wine = load_dataset().features.iloc[0].to_dict()
    stack.compose("stop", "mlflow-server")
    try:
        for _ in range(20):
            response = requests.post(f"{API}/predict", json=wine, timeout=10)
            assert response.status_code == 200, response.text
        assert requests.get(f"{API}/readyz", timeout=5).status_code == 200
        wait_until(
            lambda: value(requests.get(f"{EXPORTER}/metrics", timeout=10).text, "mlflow_up") == 0,
            "the exporter to notice MLflow is down",
            timeout=60,
            interval=1,
        )
        text = requests.get(f"{EXPORTER}/metrics", timeout=10).text
        assert value(text, "mlflow_model_alias_version", model=MODEL, alias="champion") is not None
    finally:
        stack.compose("up", "--detach", "--wait", "mlflow-server")
    wait_until(
        lambda: value(requests.get(f"{EXPORTER}/metrics", timeout=10).text, "mlflow_up") == 1,
        "the exporter to recover",
        timeout=60,
        interval=1,
    )
    assert requests.post(f"{API}/predict", json=wine, timeout=10).status_code == 200


def test_the_pipeline_smoke_stage_passes_on_the_deployed_stack(
    stack: Stack, tmp_path: Path
) -> None:
    """The Jenkinsfile's "Smoke test" and "Summary" stages, run as Jenkins runs them."""
    result = stack.make("smoke", "summary", f"REPORTS={tmp_path}")
    suite = ElementTree.parse(tmp_path / "smoke-junit.xml").getroot().find("testsuite")  # noqa: S314
    assert suite is not None
    assert (suite.get("failures"), suite.get("errors")) == ("0", "0")
    outcomes: dict[str, set[str]] = {}
    for case in suite.iter("testcase"):
        module = case.get("classname", "").rpartition(".")[2]
        skipped = case.find("skipped")
        outcome = "passed" if skipped is None else f"skipped: {skipped.get('message')}"
        outcomes.setdefault(module, set()).add(outcome)
    for module in ("mlflow_server", "prediction_api", "mlflow_exporter", "prometheus"):
        assert outcomes[f"test_{module}"] == {"passed"}, module
    (grafana,) = outcomes["test_grafana"]
    expected = "skipped: grafana is not part of" if stack.airgap else "passed"
    assert grafana.startswith(expected), grafana
    champion = f"champion wine-classifier v{_champion(stack)}, accuracy "
    assert f"smoke passed; {champion}" in result.stdout
