"""The trust boundary in real containers, tried the way an attacker or an auditor would.

Runs after tests/e2e/test_stack.py (see MODULE_ORDER), on the same stack: anonymous and
under-privileged MLflow requests, a booby-trapped champion, the database roles, and what
`docker inspect` shows of the running containers.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import mlflow
import pytest
import requests
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from model_training.data import load_dataset
from tests.e2e.conftest import API, PROMETHEUS, Stack
from tests.support.model_traps import pickle_trap_dir
from wine_mlops.waiting import wait_until

pytestmark = pytest.mark.e2e

MODEL = "wine-classifier"
COMPOSE = ("docker", "compose")
LONG_RUNNING = ("mlflow-db", "mlflow-server", "mlflow-exporter", "prediction-api", "prometheus")
BUILT_HERE = ("mlflow-server", "mlflow-exporter", "prediction-api")


def _inspect(stack: Stack, service: str) -> dict[str, Any]:
    container = stack.compose("ps", "--quiet", service).strip()
    assert container, f"{service} is not running"
    out = subprocess.run(
        ["docker", "inspect", container], capture_output=True, text=True, check=True
    ).stdout
    inspected: dict[str, Any] = json.loads(out)[0]
    return inspected


def _as(stack: Stack, user: str, monkeypatch: pytest.MonkeyPatch) -> MlflowClient:
    name, password = stack.login(user)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", name)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    return MlflowClient(stack.mlflow_url, stack.mlflow_url)


def _status(error: pytest.ExceptionInfo[MlflowException]) -> int:
    found = re.search(r"error code (\d{3})|\b(\d{3})\b", str(error.value))
    assert found, str(error.value)
    return int(found.group(1) or found.group(2))


def test_anonymous_requests_get_401_and_the_health_check_stays_open(stack: Stack) -> None:
    base = stack.mlflow_url
    assert requests.get(f"{base}/health", timeout=10).status_code == 200
    for method, path in [
        ("GET", "/"),
        ("GET", "/api/2.0/mlflow/experiments/search?max_results=5"),
        ("GET", "/api/2.0/mlflow/registered-models/alias?name=wine-classifier&alias=champion"),
        ("POST", "/api/2.0/mlflow/registered-models/alias"),
        ("DELETE", "/api/2.0/mlflow/model-versions/delete"),
        ("GET", "/metrics"),
    ]:
        response = requests.request(method, f"{base}{path}", json={}, timeout=10)
        assert response.status_code == 401, (method, path, response.status_code)
    page = requests.get(f"{base}/", auth=stack.login("admin"), timeout=10)
    assert page.status_code == 200
    assert "<title>MLflow</title>" in page.text


def test_service_users_hold_only_what_they_need(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = _as(stack, "prediction-api", monkeypatch)
    champion = api.get_model_version_by_alias(MODEL, "champion").version
    for attempt in (
        lambda: api.set_registered_model_alias(MODEL, "champion", "1"),
        lambda: api.delete_model_version(MODEL, champion),
    ):
        with pytest.raises(MlflowException) as refused:
            attempt()
        assert _status(refused) == 403
    exporter = _as(stack, "mlflow-exporter", monkeypatch)
    experiment = exporter.get_experiment_by_name("wine-classifier")
    assert experiment is not None
    run = exporter.search_runs([experiment.experiment_id], max_results=1)[0]
    with pytest.raises(MlflowException) as refused:
        exporter.set_tag(run.info.run_id, "tampered", "yes")
    assert _status(refused) == 403
    assert _as(stack, "admin", monkeypatch).get_model_version_by_alias(MODEL, "champion").version


def test_prometheus_reads_mlflow_metrics_on_an_unpublished_ops_port(stack: Stack) -> None:
    ports = _inspect(stack, "mlflow-server")["NetworkSettings"]["Ports"]
    assert [b["HostIp"] for b in ports["5000/tcp"]] == ["127.0.0.1"]
    assert not ports.get("5001/tcp")  # exposed to the stack's networks, never on the host
    targets = requests.get(f"{PROMETHEUS}/api/v1/targets", timeout=10).json()
    mlflow_target = [
        t for t in targets["data"]["activeTargets"] if t["labels"]["job"] == "mlflow-server"
    ]
    assert [t["scrapeUrl"] for t in mlflow_target] == ["http://mlflow-server:5001/metrics"]


def _exists_in(stack: Stack, service: str, path: str) -> bool:
    check = f"import os, sys; sys.exit(0 if os.path.exists({path!r}) else 1)"
    result = subprocess.run(
        [
            *COMPOSE,
            "--env-file",
            str(stack.env_file),
            "exec",
            "-T",
            service,
            "python3",
            "-c",
            check,
        ],
        env=stack.env,
        cwd=Path(__file__).parents[2],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode in (0, 1), result.stderr
    return result.returncode == 0


def test_a_booby_trapped_champion_never_runs_and_the_good_model_keeps_serving(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    trainer = _as(stack, "trainer", monkeypatch)  # may move the alias, as an attacker with
    served = trainer.get_model_version_by_alias(MODEL, "champion").version  # its password could
    marker = f"/tmp/pwned-{uuid.uuid4().hex}"  # inside the prediction-api container
    trap = pickle_trap_dir(tmp_path / "model", Path(marker))
    experiment = trainer.get_experiment_by_name("wine-classifier")
    assert experiment is not None
    mlflow.set_tracking_uri(stack.mlflow_url)
    with mlflow.start_run(experiment_id=experiment.experiment_id, run_name="attack") as run:
        mlflow.log_artifacts(str(trap), "model")
    bad = mlflow.register_model(f"runs:/{run.info.run_id}/model", MODEL).version

    def refused() -> dict[str, Any] | None:
        model: dict[str, Any] = requests.get(f"{API}/model", timeout=10).json()
        return model if (model.get("refused") or {}).get("version") == bad else None

    trainer.set_registered_model_alias(MODEL, "champion", bad)
    try:
        model = wait_until(refused, f"the API to refuse v{bad}", timeout=60, interval=1)
        assert model["model_version"] == served, model
        assert model["refused"]["version"] == bad, model
        assert "pickle" in model["refused"]["reason"]
        row = load_dataset().features.iloc[0].to_dict()
        answer = requests.post(f"{API}/predict", json=row, timeout=10)
        assert answer.status_code == 200
        assert answer.json()["model_version"] == served
        time.sleep(12)  # two more watch intervals: still refused, never loaded
        assert not _exists_in(stack, "prediction-api", marker)
        metrics = requests.get(f"{API}/metrics", timeout=10).text
        assert re.search(r"^wine_api_model_refused_total\{.*\} [1-9]", metrics, re.M), metrics
        logs = stack.compose("logs", "--no-color", "prediction-api")
        assert logs.count(f"version {bad}") >= 1
        assert "Traceback" not in logs
    finally:
        trainer.set_registered_model_alias(MODEL, "champion", served)


def test_running_containers_are_hardened(stack: Stack) -> None:
    for service in LONG_RUNNING:
        host = _inspect(stack, service)["HostConfig"]
        assert host["CapDrop"] == ["ALL"], service
        assert "no-new-privileges:true" in host["SecurityOpt"], service
        assert host["Memory"] > 0, service
        assert host["PidsLimit"] > 0, service
        assert host["Init"] is True, service
        assert host["RestartPolicy"]["Name"] == "unless-stopped", service
    for service in BUILT_HERE:
        assert _inspect(stack, service)["HostConfig"]["ReadonlyRootfs"] is True, service


def test_no_secret_is_visible_in_docker_inspect(stack: Stack) -> None:
    secrets = {
        value
        for line in stack.env_file.read_text().splitlines()
        if line.partition("=")[0].endswith(("_PASSWORD", "_SECRET_KEY"))
        and (value := line.partition("=")[2])
    }
    for service in LONG_RUNNING:
        inspected = json.dumps(_inspect(stack, service))
        assert not [s for s in secrets if s in inspected], service


def test_no_service_connects_to_postgres_as_a_superuser(stack: Stack) -> None:
    query = (
        "SELECT DISTINCT a.usename, r.rolsuper FROM pg_stat_activity a "
        "JOIN pg_roles r ON r.rolname = a.usename "
        "WHERE a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()"
    )
    superuser = stack.setting("POSTGRES_USER")
    out = stack.compose(
        "exec", "-T", "mlflow-db", "psql", "-U", superuser, "-d", "postgres", "-tAc", query
    )
    sessions = dict(line.split("|") for line in out.split())
    assert sessions.get(stack.setting("MLFLOW_DB_USER")) == "f", sessions
    assert "t" not in sessions.values(), sessions


def test_the_mlflow_job_runner_is_off(stack: Stack) -> None:
    """MLflow's job runner would start about 10 processes and 1.7 GiB the stack never uses."""
    count = "import os; print(sum(p.isdigit() for p in os.listdir('/proc')))"
    out = stack.compose("exec", "-T", "mlflow-server", "python3", "-c", count)
    assert int(out.strip()) <= 6, out  # init, launcher, mlflow CLI, uvicorn (+ this probe)


def test_a_rotated_service_password_is_applied_by_make_up(stack: Stack) -> None:
    """Edit the password in .env, `make deploy serve`: the new one works, the old one is dead."""
    key = "MLFLOW_PREDICTION_API_PASSWORD"
    old = stack.setting(key)
    new = f"rotated-{uuid.uuid4().hex}"
    stack.env_file.write_text(
        stack.env_file.read_text().replace(f"{key}={old}\n", f"{key}={new}\n")
    )
    stack.make("deploy", "serve")  # `make up` without the build and the training
    search = f"{stack.mlflow_url}/api/2.0/mlflow/experiments/search?max_results=1"
    assert requests.get(search, auth=("prediction-api", new), timeout=10).status_code == 200
    assert requests.get(search, auth=("prediction-api", old), timeout=10).status_code == 401
    assert requests.get(f"{API}/readyz", timeout=10).status_code == 200
    secret = stack.compose(
        "exec", "-T", "prediction-api", "cat", "/run/secrets/mlflow-prediction-api-password"
    )
    assert secret == new
