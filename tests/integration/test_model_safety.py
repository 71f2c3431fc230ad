"""Booby-trapped champions against a real MLflow server, the real API and the real trainer.

Someone who may register versions and move the ``champion`` alias registers model files
that would run a command when loaded the usual way (a pickle, and a skops file whose own
``MLmodel`` trusts its dangerous type). The API keeps serving the good version, says why it
refused the new one, and the trainer stops rather than replace or trust it; the marker
files the traps would create never appear.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from mlflow.tracking import MlflowClient

from devstack import MlflowServer, Service, auth_env, run_training, start_api
from tests.integration.test_prediction_api import predict_all, train_ok
from tests.support.model_traps import pickle_trap_dir, skops_trap_dir

pytestmark = pytest.mark.integration

WATCH_SECONDS = 1


def register_files(client: MlflowClient, names: dict[str, str], model_dir: Path) -> str:
    """Logs a model directory as plain run artifacts and registers it as a new version."""
    experiment = client.get_experiment_by_name(names["WINE_EXPERIMENT_NAME"])
    assert experiment is not None
    run = client.create_run(experiment.experiment_id, run_name="hand-made model")
    client.log_artifacts(run.info.run_id, str(model_dir), "model")
    client.set_terminated(run.info.run_id)
    version = client.create_model_version(
        names["WINE_MODEL_NAME"], f"{run.info.artifact_uri}/model", run_id=run.info.run_id
    )
    return str(version.version)


def wait_for_refusal(api: Service, version: str) -> dict:
    """Waits until ``GET /model`` reports ``version`` as refused; returns that answer."""

    def refused() -> dict:
        model: dict = httpx.get(f"{api.url}/model").json()
        return model if (model.get("refused") or {}).get("version") == version else {}

    return api.wait_until(refused, f"version {version} refused")


def metric(api: Service, sample: str) -> float:
    """The value of one sample line of ``/metrics``, e.g. ``name{label="x"}``."""
    for line in httpx.get(f"{api.url}/metrics").text.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{sample} not in /metrics")


@dataclass
class Attack:
    """The served API, the trapped versions and what was seen after each was refused."""

    server: MlflowServer
    api: Service
    client: MlflowClient
    names: dict[str, str]
    markers: list[Path]
    pickle_version: str
    skops_version: str
    after_pickle: dict
    after_skops: dict


@pytest.fixture(scope="module")
def attack(
    mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Attack]:
    """A good champion (v1, from the trainer) served; then two trapped champions in turn."""
    suffix = uuid.uuid4().hex[:8]
    names = {"WINE_EXPERIMENT_NAME": f"safety-{suffix}", "WINE_MODEL_NAME": f"safety-{suffix}"}
    workdir = tmp_path_factory.mktemp("safety")
    train_ok(mlflow_server.url, "LogisticRegression", names)
    login = auth_env("admin")  # this test's model has no grant for the prediction-api user
    api = start_api(
        mlflow_server.url,
        workdir,
        WINE_MODEL_NAME=names["WINE_MODEL_NAME"],
        WINE_WATCH_INTERVAL_SECONDS=str(WATCH_SECONDS),
        MLFLOW_TRACKING_USERNAME=login["MLFLOW_TRACKING_USERNAME"],
        MLFLOW_TRACKING_PASSWORD=login["MLFLOW_TRACKING_PASSWORD"],
    )
    try:
        client = MlflowClient(mlflow_server.url)
        model = names["WINE_MODEL_NAME"]
        markers = [workdir / "pickle-ran", workdir / "skops-ran"]
        pickle_version = register_files(
            client, names, pickle_trap_dir(workdir / "pickle-model", markers[0])
        )
        client.set_registered_model_alias(model, "champion", pickle_version)
        wait_for_refusal(api, pickle_version)
        time.sleep(3 * WATCH_SECONDS)  # a few more checks: none may load it again
        after_pickle = {
            "model": httpx.get(f"{api.url}/model").json(),
            "versions": {a["model_version"] for a in predict_all(api.url)},
            "refused_format": metric(api, 'wine_api_model_refused_total{reason="format"}'),
        }
        skops_version = register_files(
            client, names, skops_trap_dir(workdir / "skops-model", markers[1])
        )
        client.set_registered_model_alias(model, "champion", skops_version)
        wait_for_refusal(api, skops_version)
        after_skops = {
            "model": httpx.get(f"{api.url}/model").json(),
            "versions": {a["model_version"] for a in predict_all(api.url)},
            "refused_types": metric(api, 'wine_api_model_refused_total{reason="untrusted_types"}'),
        }
        yield Attack(
            mlflow_server,
            api,
            client,
            names,
            markers,
            pickle_version,
            skops_version,
            after_pickle,
            after_skops,
        )
    finally:
        api.stop()


def test_a_pickled_champion_is_refused_and_the_good_version_keeps_serving(attack: Attack) -> None:
    seen = attack.after_pickle
    assert seen["versions"] == {"1"}
    assert seen["model"]["model_version"] == "1"
    assert seen["model"]["refused"] == {
        "version": attack.pickle_version,
        "kind": "format",
        "reason": "serialization format 'pickle' is not accepted; only 'skops' models are "
        "loaded (pickle would run code from the model file)",
    }
    assert seen["refused_format"] == 1
    log = attack.api.log()
    model = attack.names["WINE_MODEL_NAME"]
    assert log.count(f"refused {model} version {attack.pickle_version} ") == 1
    assert "Traceback" not in log
    assert not attack.markers[0].exists()


def test_a_skops_champion_trusting_its_own_trap_is_refused(attack: Attack) -> None:
    seen = attack.after_skops
    assert seen["versions"] == {"1"}
    refused = seen["model"]["refused"]
    assert (refused["version"], refused["kind"]) == (attack.skops_version, "untrusted_types")
    assert "tests.support.model_traps.SkopsTrap" in refused["reason"]
    assert seen["refused_types"] == 1
    assert not attack.markers[1].exists()


def test_the_trainer_stops_rather_than_trust_or_replace_a_refused_champion(
    attack: Attack,
) -> None:
    model = attack.names["WINE_MODEL_NAME"]
    before = {v.version for v in attack.client.search_model_versions(f"name='{model}'")}
    result = run_training(attack.server.url, candidates="LogisticRegression", **attack.names)
    assert result.returncode == 1
    assert (
        f"champion {model} v{attack.skops_version} was refused: the model file names "
        "untrusted types: 'tests.support.model_traps.SkopsTrap'"
    ) in result.stderr
    assert "Traceback" not in result.stderr
    after = {v.version for v in attack.client.search_model_versions(f"name='{model}'")}
    assert after == before  # nothing registered
    champion = attack.client.get_model_version_by_alias(model, "champion")
    assert champion.version == attack.skops_version  # and no alias moved
    assert not any(marker.exists() for marker in attack.markers)
