"""MLflow's basic-auth as the stack runs it: who may do what, tried as each user would.

Against a real ``mlflow server`` started by the stack's launcher (SQLite and PostgreSQL
stores), with the users the launcher provisions.
"""

from __future__ import annotations

import logging
import re

import mlflow
import pytest
import requests
from mlflow.exceptions import MlflowException, RestException
from mlflow.tracking import MlflowClient
from pydantic import SecretStr
from sklearn.dummy import DummyClassifier

from devstack import PASSWORDS, MlflowServer, auth_env
from mlflow_server.users import ServiceUser, provision
from wine_mlops.features import FEATURE_NAMES

pytestmark = pytest.mark.integration

EXPERIMENT = "wine-classifier"
MODEL = "wine-classifier"


def _as(user: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in auth_env(user).items():
        monkeypatch.setenv(key, value)


@pytest.fixture(scope="module")
def version(mlflow_server: MlflowServer) -> str:
    """One registered version of the stack's model, logged by the trainer."""
    with pytest.MonkeyPatch.context() as patch:
        _as("trainer", patch)
        client = MlflowClient(mlflow_server.url, mlflow_server.url)
        experiment = client.get_experiment_by_name(EXPERIMENT)
        assert experiment is not None, "the launcher creates the experiment"
        assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
        mlflow.set_tracking_uri(mlflow_server.url)
        model = DummyClassifier().fit([[0.0] * len(FEATURE_NAMES)] * 3, [0, 1, 2])
        with mlflow.start_run(experiment_id=experiment.experiment_id):
            info = mlflow.sklearn.log_model(model, name="model", registered_model_name=MODEL)
        version = str(info.registered_model_version)
        client.set_registered_model_alias(MODEL, "champion", version)
    return version


def _status(error: pytest.ExceptionInfo[MlflowException]) -> int:
    """The HTTP status of a refused MLflow call (MLflow words plain-text refusals itself)."""
    if isinstance(error.value, RestException):
        return int(error.value.get_http_status_code())
    found = re.search(r"error code (\d{3})", str(error.value))
    assert found, str(error.value)
    return int(found.group(1))


def test_anonymous_requests_get_401_except_health(mlflow_server: MlflowServer) -> None:
    base = mlflow_server.url
    assert requests.get(f"{base}/health", timeout=10).status_code == 200
    for method, path in [
        ("GET", "/api/2.0/mlflow/experiments/search?max_results=5"),
        ("POST", "/api/2.0/mlflow/experiments/create"),
        ("POST", "/api/2.0/mlflow/registered-models/alias"),
        ("GET", "/api/2.0/mlflow/registered-models/search"),
        ("GET", "/"),
        ("GET", "/metrics"),
    ]:
        response = requests.request(method, f"{base}{path}", json={"name": "x"}, timeout=10)
        assert response.status_code == 401, (method, path, response.status_code)
        assert response.headers.get("WWW-Authenticate", "").startswith("Basic")


def test_a_wrong_password_gets_401(mlflow_server: MlflowServer) -> None:
    response = requests.get(
        f"{mlflow_server.url}/api/2.0/mlflow/experiments/search",
        params={"max_results": 1},
        auth=("trainer", PASSWORDS["trainer"] + "x"),
        timeout=10,
    )
    assert response.status_code == 401


def test_the_prediction_api_reads_the_champion_but_cannot_move_or_delete_it(
    mlflow_server: MlflowServer, version: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _as("prediction-api", monkeypatch)
    client = MlflowClient(mlflow_server.url, mlflow_server.url)
    assert client.get_model_version_by_alias(MODEL, "champion").version == version
    assert mlflow.artifacts.download_artifacts(f"models:/{MODEL}/{version}/MLmodel")
    with pytest.raises(MlflowException) as moved:
        client.set_registered_model_alias(MODEL, "champion", version)
    assert _status(moved) == 403
    with pytest.raises(MlflowException) as deleted:
        client.delete_model_version(MODEL, version)
    assert _status(deleted) == 403
    with pytest.raises(MlflowException) as unaliased:
        client.delete_registered_model_alias(MODEL, "champion")
    assert _status(unaliased) == 403
    assert client.get_model_version_by_alias(MODEL, "champion").version == version


def test_the_exporter_reads_everything_and_writes_nothing(
    mlflow_server: MlflowServer, version: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _as("mlflow-exporter", monkeypatch)
    client = MlflowClient(mlflow_server.url, mlflow_server.url)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert runs
    assert MODEL in [m.name for m in client.search_registered_models()]
    run_id = runs[0].info.run_id
    attempts = [
        lambda: client.log_metric(run_id, "accuracy", 0.0),
        lambda: client.set_tag(run_id, "tampered", "yes"),
        lambda: client.create_run(experiment.experiment_id),
        lambda: client.set_registered_model_alias(MODEL, "champion", version),
        lambda: client.delete_run(run_id),
    ]
    for attempt in attempts:
        with pytest.raises(MlflowException) as refused:
            attempt()
        assert _status(refused) == 403


def test_the_trainer_cannot_manage_users_or_read_the_metrics(
    mlflow_server: MlflowServer, version: str
) -> None:
    trainer = ("trainer", PASSWORDS["trainer"])
    created = requests.post(
        f"{mlflow_server.url}/api/2.0/mlflow/users/create",
        json={"username": "intruder", "password": "intruder-password-1"},
        auth=trainer,
        timeout=10,
    )
    assert created.status_code == 403
    promoted = requests.patch(
        f"{mlflow_server.url}/api/2.0/mlflow/users/update-admin",
        json={"username": "trainer", "is_admin": True},
        auth=trainer,
        timeout=10,
    )
    assert promoted.status_code == 403


def test_prometheus_reads_mlflow_metrics_on_the_ops_port_without_a_login(
    mlflow_server: MlflowServer, version: str
) -> None:
    response = requests.get(f"{mlflow_server.ops_url}/metrics", timeout=10)
    assert response.status_code == 200
    assert "mlflow_http_request_total" in response.text
    assert requests.get(f"{mlflow_server.ops_url}/readyz", timeout=10).status_code == 200


def _users(trainer_password: str) -> list[ServiceUser]:
    return [
        ServiceUser("trainer", SecretStr(trainer_password), "EDIT", "MANAGE"),
        ServiceUser("prediction-api", SecretStr(PASSWORDS["prediction-api"]), "READ", "READ"),
        ServiceUser(
            "mlflow-exporter",
            SecretStr(PASSWORDS["mlflow-exporter"]),
            "READ",
            "READ",
            everything=True,
        ),
    ]


def _login(server: MlflowServer, user: str, password: str) -> int:
    return requests.get(
        f"{server.url}/api/2.0/mlflow/experiments/search",
        params={"max_results": 1},
        auth=(user, password),
        timeout=10,
    ).status_code


def test_provisioning_again_changes_nothing_and_applies_a_rotated_password(
    mlflow_server: MlflowServer, version: str, caplog: pytest.LogCaptureFixture
) -> None:
    admin = ("admin", SecretStr(PASSWORDS["admin"]))
    with caplog.at_level(logging.INFO, logger="mlflow_server.users"):
        provision(mlflow_server.url, admin, _users(PASSWORDS["trainer"]), EXPERIMENT, MODEL)
    changes = [r.getMessage() for r in caplog.records if "in place" not in r.getMessage()]
    assert changes == []

    rotated = PASSWORDS["trainer"] + "-rotated"
    try:
        provision(mlflow_server.url, admin, _users(rotated), EXPERIMENT, MODEL)
        assert _login(mlflow_server, "trainer", rotated) == 200
        assert _login(mlflow_server, "trainer", PASSWORDS["trainer"]) == 401
    finally:
        provision(mlflow_server.url, admin, _users(PASSWORDS["trainer"]), EXPERIMENT, MODEL)
    assert _login(mlflow_server, "trainer", PASSWORDS["trainer"]) == 200


def test_provisioning_with_a_wrong_admin_password_says_so(mlflow_server: MlflowServer) -> None:
    wrong = ("admin", SecretStr("not-the-admin-password"))
    with pytest.raises(PermissionError, match="MLFLOW_ADMIN_PASSWORD does not match"):
        provision(mlflow_server.url, wrong, [], EXPERIMENT, MODEL)
