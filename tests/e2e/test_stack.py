"""The foundation stack in real containers: PostgreSQL, the MLflow server and training.

Tests run in file order: the later ones restart and retrain the stack.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import mlflow
import pytest
import requests
from mlflow.tracking import MlflowClient
from sklearn.metrics import accuracy_score

from model_training.data import load_dataset
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e

MODEL = "wine-classifier"


@pytest.fixture
def client(stack: Stack) -> MlflowClient:
    mlflow.set_tracking_uri(stack.mlflow_url)
    return MlflowClient(stack.mlflow_url)


def _state(client: MlflowClient) -> tuple[set[str], set[str]]:
    experiment = client.get_experiment_by_name("wine-classifier")
    assert experiment is not None
    runs = {r.info.run_id for r in client.search_runs([experiment.experiment_id], max_results=1000)}
    versions = {v.version for v in client.search_model_versions(f"name='{MODEL}'")}
    return runs, versions


def test_every_service_is_healthy(stack: Stack) -> None:
    states = [json.loads(line) for line in stack.compose("ps", "--format", "json").splitlines()]
    health = {s["Service"]: s["Health"] for s in states}
    expected = {
        "mlflow-db",
        "mlflow-server",
        "mlflow-exporter",
        "model-training-webhook",
        "prometheus",
        "alertmanager",
        "prediction-api",
    }
    if not stack.airgap:
        expected.add("grafana")
    assert health == dict.fromkeys(expected, "healthy")


def test_training_registered_a_good_champion(stack: Stack, client: MlflowClient) -> None:
    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert champion.run_id is not None
    assert client.get_run(champion.run_id).data.metrics["accuracy"] >= 0.95
    model = mlflow.sklearn.load_model(f"models:/{MODEL}@champion")
    data = load_dataset()
    assert accuracy_score(data.target, model.predict(data.features)) >= 0.95


def test_ui_and_api_answer_on_localhost_after_a_login(stack: Stack) -> None:
    page = requests.get(f"{stack.mlflow_url}/", auth=stack.login("admin"), timeout=10)
    assert page.status_code == 200
    assert "<title>MLflow</title>" in page.text
    ops = "import urllib.request as u; print(u.urlopen('http://127.0.0.1:5001/metrics').read())"
    metrics = stack.compose("exec", "-T", "mlflow-server", "python3", "-c", ops)
    assert "mlflow_http_request_total" in metrics


def test_database_is_not_published_and_services_are_not_root(stack: Stack) -> None:
    published = json.loads(stack.compose("ps", "--format", "json", "mlflow-db"))["Publishers"]
    assert not [p for p in published or [] if p.get("PublishedPort")]
    services = ("mlflow-server", "mlflow-db", "mlflow-exporter", "prediction-api", "prometheus")
    for service in services:  # the user of each main process (PID 1)
        uid = stack.compose("exec", "-T", service, "awk", "/^Uid:/ {print $2}", "/proc/1/status")
        assert uid.strip() not in ("", "0"), service


def test_a_bad_csv_is_rejected_with_exit_code_2(stack: Stack, client: MlflowClient) -> None:
    runs_before, _ = _state(client)
    bad = stack.data_dir / "bad.csv"
    bad.write_text("alcohol,target\n13.2,0\nstrong,4\n")
    bad.chmod(0o644)
    result = stack.make("train-stack", "TRAIN_ARGS=--data /data/bad.csv", check=False)
    assert result.returncode != 0
    assert "missing columns: malic_acid" in result.stderr + result.stdout
    assert "exited with code 2" in result.stderr or "Error 2" in result.stderr
    assert _state(client)[0] == runs_before


def test_a_worse_model_never_becomes_champion(stack: Stack, client: MlflowClient) -> None:
    champion = client.get_model_version_by_alias(MODEL, "champion").version
    stack.make("train-stack", "TRAIN_ARGS=--candidates DummyClassifier")
    assert client.get_model_version_by_alias(MODEL, "champion").version == champion
    challenger = client.get_model_version_by_alias(MODEL, "challenger")
    assert int(challenger.version) > int(champion)


def test_runs_versions_and_artifacts_survive_down_and_up(
    stack: Stack, client: MlflowClient, tmp_path: Path
) -> None:
    runs, versions = _state(client)
    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert champion.run_id is not None
    stack.make("down")
    assert stack.compose("ps", "-q").strip() == ""
    stack.make("up")
    runs_after, versions_after = _state(client)
    assert runs <= runs_after
    assert versions <= versions_after
    assert len(runs_after) > len(runs)  # `make up` trained again
    report = client.download_artifacts(
        champion.run_id, "evaluation/classification_report.txt", str(tmp_path)
    )
    assert "precision" in Path(report).read_text()
    reloaded = mlflow.sklearn.load_model(f"models:/{MODEL}/{champion.version}")
    data = load_dataset()
    assert accuracy_score(data.target, reloaded.predict(data.features)) >= 0.95


def test_compose_refuses_to_start_without_the_secret_files(stack: Stack, tmp_path: Path) -> None:
    empty = tmp_path / "no-secrets"
    empty.mkdir()
    env = {**stack.env, "COMPOSE_PROJECT_NAME": "wine-mlops-nosecrets", "SECRETS_DIR": str(empty)}
    compose = ["docker", "compose", "--env-file", str(stack.env_file)]
    try:
        result = subprocess.run(
            [*compose, "up", "--no-start", "--no-build", "mlflow-server"],
            cwd=Path(__file__).parents[2],
            env=env,
            capture_output=True,
            text=True,
        )
    finally:
        subprocess.run([*compose, "down"], cwd=Path(__file__).parents[2], env=env, check=False)
    assert result.returncode != 0
    assert str(empty) in result.stderr  # names the missing secret file
    assert stack.compose("ps", "--quiet", "mlflow-server").strip()  # the stack is untouched
