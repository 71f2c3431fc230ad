"""After an upgrade, the stack's own ``trainer`` login gives the old champion its ONNX twin.

The stack trains as ``trainer`` (EDIT on the experiment, MANAGE on the registered model):
resuming the champion's run, logging the twin in it, registering it and moving ``champion``
must all be within those grants, on both backend stores.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from mlflow.server import get_app_client
from mlflow.tracking import MlflowClient

from devstack import MlflowServer, auth_env, run_training
from tests.model_training.test_onnx_twin import extra_files, register_legacy_champion

pytestmark = pytest.mark.integration


def test_the_trainer_login_gives_the_legacy_champion_its_onnx_twin(
    mlflow_server: MlflowServer, mlflow_process_uri: Callable[[str], None], tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    experiment, model = f"upgrade-{suffix}", f"upgrade-model-{suffix}"
    mlflow_process_uri(mlflow_server.url)
    admin = MlflowClient(mlflow_server.url)
    legacy = register_legacy_champion(admin, experiment, model, tmp_path, with_ranges=True)
    grants = get_app_client("basic-auth", tracking_uri=mlflow_server.url)
    found = admin.get_experiment_by_name(experiment)
    assert found is not None
    grants.grant_user_permission("trainer", "experiment", found.experiment_id, "EDIT")
    grants.grant_user_permission("trainer", "registered_model", model, "MANAGE")

    result = run_training(
        mlflow_server.url,
        candidates="DummyClassifier",
        WINE_MIN_ACCURACY="0",
        WINE_EXPERIMENT_NAME=experiment,
        WINE_MODEL_NAME=model,
        **auth_env("trainer"),
    )

    assert result.returncode == 0, result.stderr[-3000:]
    assert "champion v1 has no ONNX model: registered its ONNX twin v2" in result.stderr
    champion = admin.get_model_version_by_alias(model, "champion")
    assert (champion.version, champion.run_id) == ("2", legacy.run_id)
    assert champion.tags["onnx_twin_of"] == "1"
    assert "model.onnx" in extra_files(admin, mlflow_server.url, model, "2")
    assert admin.get_model_version_by_alias(model, "challenger").version == "3"
