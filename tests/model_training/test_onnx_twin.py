"""Upgrading keeps the champion servable: a champion without ONNX gets its ONNX twin.

A champion registered by an earlier version of the stack has no ``extra_files/model.onnx``,
and the prediction API serves nothing else. The next training session converts it (same
conversion and parity check as a candidate), logs the twin in the champion's own run,
registers it and moves ``champion`` to it, whether or not the session's candidates win.
The legacy champion is made here the way the earlier version logged it: skops with our
trusted types, its training ranges or no extra file at all, in a run with its test metrics.
"""

from __future__ import annotations

import logging
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
from mlflow.data.pandas_dataset import from_pandas
from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion
from mlflow.models import infer_signature
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.tracking import MlflowClient

from devstack import MlflowServer, run_training
from model_training import onnx_export
from model_training.candidates import build_candidates
from model_training.data import load_dataset
from model_training.evaluation import score_on_test_set
from model_training.onnx_export import ConversionError, run_onnx
from model_training.session import model_requirements, run_session, split_dataset
from model_training.settings import TrainingSettings
from tests.model_training.test_onnx import scaled_probabilities
from wine_mlops.model_files import TRUSTED_TYPES, load_version_files
from wine_mlops.training_ranges import TRAINING_RANGES_FILE, TrainingRanges

pytestmark = [
    pytest.mark.integration,
    pytest.mark.parametrize("mlflow_server", ["sqlite"], indirect=True),
]

LEGACY_DESCRIPTION = (
    "LogisticRegression, trained on sklearn.datasets.load_wine. Registered as `champion`: "
    "no champion yet; candidate promoted."
)
LEGACY_TAGS = {
    "model_family": "LogisticRegression",
    "promotion": "champion",
    "promotion_reason": "no champion yet; candidate promoted",
}


def register_legacy_champion(
    client: MlflowClient, experiment: str, model: str, folder: Path, *, with_ranges: bool
) -> ModelVersion:
    """Logs and registers a champion as the stack did before training wrote ONNX."""
    wine = load_dataset()
    split = split_dataset(wine, 0.25, 42)
    estimator = build_candidates(("LogisticRegression",), 42)["LogisticRegression"]
    estimator.fit(split.x_train, split.y_train)
    extra_files = []
    if with_ranges:
        ranges = folder / TRAINING_RANGES_FILE
        ranges.write_text(TrainingRanges.of(split.x_train).model_dump_json(), encoding="utf-8")
        extra_files.append(str(ranges))
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    with mlflow.start_run(experiment_id=experiment_id, run_name="LogisticRegression"):
        frame = wine.features.assign(target=wine.target)
        mlflow.log_input(from_pandas(frame, name="wine", targets="target"), context="training")
        mlflow.log_params({"C": 1.0, "max_iter": 2000})
        mlflow.log_metrics(score_on_test_set(estimator, split.x_test, split.y_test))
        info = mlflow.sklearn.log_model(
            estimator,
            name="model",
            serialization_format="skops",
            skops_trusted_types=list(TRUSTED_TYPES),
            signature=infer_signature(split.x_test, estimator.predict(split.x_test)),
            input_example=split.x_test.head(3),
            pip_requirements=list(model_requirements()),
            extra_files=extra_files or None,
        )
    version = mlflow.register_model(info.model_uri, model, tags=LEGACY_TAGS)
    client.update_model_version(model, version.version, description=LEGACY_DESCRIPTION)
    client.set_registered_model_alias(model, "champion", version.version)
    return client.get_model_version(model, version.version)


def extra_files(client: MlflowClient, url: str, model: str, version: str) -> set[str]:
    repository = get_artifact_repository(
        client.get_model_version_download_uri(model, version), tracking_uri=url
    )
    return {Path(a.path).name for a in repository.list_artifacts("extra_files")}


def twins(client: MlflowClient, model: str) -> list[ModelVersion]:
    versions = client.search_model_versions(f"name = '{model}'")
    return [v for v in versions if "onnx_twin_of" in v.tags]


# --- a real training process after the upgrade --------------------------------------------


@pytest.fixture(scope="module")
def names() -> dict[str, str]:
    suffix = uuid.uuid4().hex[:8]
    return {"WINE_EXPERIMENT_NAME": f"twin-{suffix}", "WINE_MODEL_NAME": f"twin-model-{suffix}"}


@pytest.fixture(scope="module")
def legacy(
    mlflow_server: MlflowServer, names: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ModelVersion]:
    """The earlier version's champion (with its training ranges), registered as v1."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
        patch.setattr("mlflow.tracking._tracking_service.utils._tracking_uri", None)
        yield register_legacy_champion(
            MlflowClient(mlflow_server.url),
            names["WINE_EXPERIMENT_NAME"],
            names["WINE_MODEL_NAME"],
            tmp_path_factory.mktemp("legacy"),
            with_ranges=True,
        )


@pytest.fixture(scope="module")
def legacy_run(legacy: ModelVersion, mlflow_server: MlflowServer) -> Run:
    """The legacy champion's run as it was before the upgrade."""
    assert legacy.run_id is not None
    return MlflowClient(mlflow_server.url).get_run(legacy.run_id)


@pytest.fixture(scope="module")
def upgraded(
    legacy_run: Run, mlflow_server: MlflowServer, names: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """The first training after the upgrade, with a candidate worse than the champion."""
    result = run_training(
        mlflow_server.url, candidates="DummyClassifier", WINE_MIN_ACCURACY="0", **names
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_training_after_the_upgrade_moves_champion_to_the_legacy_champions_onnx_twin(
    legacy: ModelVersion,
    upgraded: subprocess.CompletedProcess[str],
    mlflow_server: MlflowServer,
    names: dict[str, str],
) -> None:
    client = MlflowClient(mlflow_server.url)
    model = names["WINE_MODEL_NAME"]
    champion = client.get_model_version_by_alias(model, "champion")
    assert champion.version == "2"
    assert champion.run_id == legacy.run_id
    assert champion.tags["onnx_twin_of"] == "1"
    assert champion.tags["promotion"] == "onnx-twin"
    assert champion.tags["model_family"] == "LogisticRegression"
    assert champion.tags["promotion_reason"].startswith("ONNX twin of v1: the same estimator")
    about = champion.description or ""
    assert about.startswith(LEGACY_DESCRIPTION)
    assert "ONNX twin of version 1" in about
    assert "Its training ranges are those version 1 carries." in about
    assert extra_files(client, mlflow_server.url, model, "2") == {
        "model.onnx",
        "training_ranges.json",
    }
    [line] = [line for line in upgraded.stderr.splitlines() if "has no ONNX model" in line]
    assert "champion v1 has no ONNX model: registered its ONNX twin v2 (max |Δp| " in line
    assert line.endswith(") and moved champion to it")
    assert "WARNING" not in upgraded.stderr

    # the twin answers like the legacy estimator, with onnxruntime as the API runs it
    wine = load_dataset()
    served = load_version_files(client, mlflow_server.url, model, "2", prefer_onnx=True)
    old = load_version_files(client, mlflow_server.url, model, "1")
    assert served.onnx_model is not None
    labels, probabilities = run_onnx(served.onnx_model, wine.features)
    assert labels.tolist() == old.estimator.predict(wine.features).tolist()
    assert np.abs(probabilities - old.estimator.predict_proba(wine.features)).max() <= 1e-5
    assert served.training_ranges == old.training_ranges is not None

    # the candidate competed with the twin, whose scores are the legacy champion's
    challenger = client.get_model_version_by_alias(model, "challenger")
    assert challenger.version == "3"
    assert challenger.tags["model_family"] == "DummyClassifier"
    assert "worse than champion v2" in challenger.tags["promotion_reason"]
    assert "champion v2 stays" in upgraded.stderr


def test_the_legacy_version_and_its_run_stay_as_they_were(
    legacy: ModelVersion,
    legacy_run: Run,
    upgraded,
    mlflow_server: MlflowServer,
    names: dict[str, str],
) -> None:
    client = MlflowClient(mlflow_server.url)
    model = names["WINE_MODEL_NAME"]
    old = client.get_model_version(model, "1")
    assert old.tags == LEGACY_TAGS
    assert old.description == LEGACY_DESCRIPTION
    assert old.aliases == []
    assert extra_files(client, mlflow_server.url, model, "1") == {"training_ranges.json"}
    assert legacy.run_id is not None
    before = client.get_model_version_by_alias(model, "champion")  # the twin, same run
    run = client.get_run(legacy.run_id)
    assert before.run_id == legacy.run_id
    # resumed for the twin, not rerun: same status, end time, metrics, params and input
    assert run.info.status == legacy_run.info.status == "FINISHED"
    assert run.info.end_time == legacy_run.info.end_time
    assert run.data.params == legacy_run.data.params
    assert run.inputs is not None
    assert legacy_run.inputs is not None
    [dataset] = run.inputs.dataset_inputs
    assert dataset.dataset.digest == legacy_run.inputs.dataset_inputs[0].dataset.digest
    assert {k: v for k, v in run.data.metrics.items() if not k.startswith("onnx_")} == (
        legacy_run.data.metrics
    )
    # /model and the promotion read the run: its test metrics are the legacy ones
    wine = load_dataset()
    split = split_dataset(wine, 0.25, 42)
    estimator = load_version_files(client, mlflow_server.url, model, "1").estimator
    expected = score_on_test_set(estimator, split.x_test, split.y_test)
    assert run.data.metrics["accuracy"] == pytest.approx(expected["accuracy"])
    assert run.data.params["C"] == "1.0"
    assert run.data.metrics["onnx_label_mismatches"] == 0
    assert run.data.tags["onnx_parity"] == "passed"


def test_a_second_session_makes_no_other_twin(
    upgraded, mlflow_server: MlflowServer, names: dict[str, str]
) -> None:
    result = run_training(
        mlflow_server.url, candidates="DummyClassifier", WINE_MIN_ACCURACY="0", **names
    )
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(mlflow_server.url)
    model = names["WINE_MODEL_NAME"]
    assert "has no ONNX model" not in result.stderr
    assert [v.version for v in twins(client, model)] == ["2"]
    assert client.get_model_version_by_alias(model, "champion").version == "2"
    assert client.get_model_version_by_alias(model, "challenger").version == "4"


# --- sessions in this process: no ranges, and a twin that cannot be made ------------------


def session_settings(mlflow_server: MlflowServer, stem: str) -> TrainingSettings:
    suffix = uuid.uuid4().hex[:8]
    return TrainingSettings(
        tracking_uri=mlflow_server.url,
        experiment_name=f"{stem}-{suffix}",
        model_name=f"{stem}-model-{suffix}",
        candidates=("DummyClassifier",),
        cv_folds=2,
        min_accuracy=0,
    )


def test_a_legacy_champion_without_ranges_gets_the_sessions_split_and_says_so(
    mlflow_server: MlflowServer,
    mlflow_process_uri: Callable[[str], None],
    tmp_path: Path,
) -> None:
    settings = session_settings(mlflow_server, "twin-bare")
    mlflow_process_uri(mlflow_server.url)
    client = MlflowClient(mlflow_server.url)
    legacy = register_legacy_champion(
        client, settings.experiment_name, settings.model_name, tmp_path, with_ranges=False
    )
    assert extra_files(client, mlflow_server.url, settings.model_name, "1") == set()

    result = run_session(load_dataset(), settings)

    assert not result.decision.promote
    champion = client.get_model_version_by_alias(settings.model_name, "champion")
    assert (champion.version, champion.run_id) == ("2", legacy.run_id)
    served = load_version_files(
        client, mlflow_server.url, settings.model_name, "2", prefer_onnx=True
    )
    assert served.onnx_model is not None
    split = split_dataset(load_dataset(), settings.test_size, settings.seed)
    assert served.training_ranges == TrainingRanges.of(split.x_train)
    assert "Version 1 carried no training ranges" in (champion.description or "")
    assert "the training split of the session that made this twin (133 rows" in (
        champion.description or ""
    )


def refuse_pipelines(convert: Callable[[Any], bytes]) -> Callable[[Any], bytes]:
    """A converter that fails for the legacy champion (a pipeline), not for the baseline."""

    def converter(model: Any) -> bytes:
        if hasattr(model, "steps"):
            raise ConversionError("skl2onnx cannot convert it (no converter for this test)")
        return convert(model)

    return converter


def drift_for_pipelines(convert: Callable[[Any], bytes]) -> Callable[[Any], bytes]:
    """A converter whose graph of the legacy champion answers 1 % off (labels unchanged)."""

    def converter(model: Any) -> bytes:
        graph = convert(model)
        return scaled_probabilities(graph, 1.01) if hasattr(model, "steps") else graph

    return converter


@pytest.mark.parametrize(
    ("damage", "cause"),
    [
        (refuse_pipelines, "it cannot be converted to ONNX: skl2onnx cannot convert it"),
        (drift_for_pipelines, "its ONNX model answers differently from scikit-learn on the 178"),
    ],
    ids=["no-converter", "parity"],
)
def test_a_champion_that_cannot_get_a_twin_stays_champion_and_the_session_warns(
    damage: Callable[[Callable[[Any], bytes]], Callable[[Any], bytes]],
    cause: str,
    mlflow_server: MlflowServer,
    mlflow_process_uri: Callable[[str], None],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    settings = session_settings(mlflow_server, "twin-fails")
    mlflow_process_uri(mlflow_server.url)
    client = MlflowClient(mlflow_server.url)
    register_legacy_champion(
        client, settings.experiment_name, settings.model_name, tmp_path, with_ranges=True
    )
    monkeypatch.setattr(onnx_export, "to_onnx", damage(onnx_export.to_onnx))

    with caplog.at_level(logging.INFO, logger="model_training.session"):
        result = run_session(load_dataset(), settings)

    assert client.get_model_version_by_alias(settings.model_name, "champion").version == "1"
    assert twins(client, settings.model_name) == []
    assert result.version == "2"  # the baseline, compared with v1 as usual
    assert "worse than champion v1" in result.decision.reason
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    [warning] = warnings
    assert warning.startswith(f"champion v1 has no ONNX model and none could be made ({cause}")
    assert warning.endswith(
        "the prediction API cannot serve it; this session's candidates are compared with it "
        "as usual"
    )
    assert not any("registered its ONNX twin" in r.getMessage() for r in caplog.records)
