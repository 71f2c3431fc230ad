"""Every candidate is logged as ONNX too, and only after it answered like scikit-learn.

The conversion tests run the graphs with onnxruntime on every wine; the session tests run
real training sessions against a real MLflow server and read back what it stored.
"""

from __future__ import annotations

import logging
import subprocess
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path

import mlflow
import numpy as np
import onnx
import onnxruntime
import pytest
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.tracking import MlflowClient
from onnx import helper, numpy_helper
from sklearn.dummy import DummyClassifier

from devstack import MlflowServer, run_training
from model_training import onnx_export
from model_training.candidates import CANDIDATES, build_candidates
from model_training.data import load_dataset
from model_training.evaluation import ONNX_PARITY_METRICS
from model_training.onnx_export import (
    PARITY_TOLERANCE,
    ConversionError,
    check_parity,
    run_onnx,
    to_onnx,
)
from model_training.session import run_session, split_dataset
from model_training.settings import TrainingSettings
from wine_mlops.features import FEATURE_NAMES
from wine_mlops.model_files import load_version_files


@pytest.fixture(scope="module")
def wine():
    return load_dataset()


@pytest.fixture(scope="module")
def fitted(wine) -> dict[str, object]:
    """Every candidate family fitted on the default training split, as a session fits it."""
    split = split_dataset(wine, 0.25, 42)
    return {
        name: model.fit(split.x_train, split.y_train)
        for name, model in build_candidates(tuple(CANDIDATES), 42).items()
    }


def onnxruntime_answers(graph: bytes, rows) -> tuple[np.ndarray, np.ndarray]:
    """What the API gets: onnxruntime, one thread, float32 rows of the 13 features."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
    labels, probabilities = session.run(None, {"input": rows.to_numpy(dtype=np.float32)})
    return labels, probabilities


@pytest.mark.parametrize("family", list(CANDIDATES))
def test_every_candidate_family_converts_and_answers_like_scikit_learn_on_every_wine(
    family: str, fitted, wine
) -> None:
    model = fitted[family]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. SVC's deprecated probA_ is read quietly
        graph = to_onnx(model)
    parsed = onnx.load_from_string(graph)
    assert {p.key: p.value for p in parsed.metadata_props} == {
        "class_ids": "0,1,2",
        "feature_names": ",".join(FEATURE_NAMES),
    }
    session = onnxruntime.InferenceSession(graph, providers=["CPUExecutionProvider"])
    [given] = session.get_inputs()
    assert (given.name, given.type, given.shape[1]) == ("input", "tensor(float)", 13)
    assert [(o.name, o.type) for o in session.get_outputs()] == [
        ("label", "tensor(int64)"),
        ("probabilities", "tensor(float)"),
    ]
    labels, probabilities = onnxruntime_answers(graph, wine.features)
    assert probabilities.shape == (178, 3)
    assert labels.tolist() == model.predict(wine.features).tolist()
    assert np.abs(probabilities - model.predict_proba(wine.features)).max() <= PARITY_TOLERANCE
    parity = check_parity(graph, model, wine.features)
    assert (parity.rows, parity.label_mismatches, parity.passed) == (178, 0, True)


@pytest.mark.parametrize("strategy", ["most_frequent", "prior"])
def test_the_baselines_own_converter_answers_like_it_for_any_number_of_rows(
    strategy: str, wine
) -> None:
    model = DummyClassifier(strategy=strategy).fit(wine.features, wine.target)  # 59, 71, 48
    graph = to_onnx(model)
    for some in (wine.features.head(1), wine.features):
        labels, probabilities = onnxruntime_answers(graph, some)
        assert labels.tolist() == model.predict(some).tolist()
        np.testing.assert_allclose(probabilities, model.predict_proba(some), atol=1e-7)


def test_a_random_baseline_is_not_converted(wine) -> None:
    model = DummyClassifier(strategy="uniform").fit(wine.features, wine.target)
    with pytest.raises(ConversionError, match=r"strategy='uniform'\) has no ONNX converter"):
        to_onnx(model)


def scaled_probabilities(graph: bytes, factor: float) -> bytes:
    """The same graph, its probabilities output multiplied by ``factor`` (a damaged model)."""
    model = onnx.load_from_string(graph)
    for node in model.graph.node:
        node.output[:] = ["raw_probabilities" if o == "probabilities" else o for o in node.output]
    model.graph.initializer.append(
        numpy_helper.from_array(np.array([factor], dtype=np.float32), "factor")
    )
    model.graph.node.append(
        helper.make_node("Mul", ["raw_probabilities", "factor"], ["probabilities"])
    )
    return model.SerializeToString()


def test_a_graph_whose_probabilities_drift_fails_the_parity_check(fitted, wine) -> None:
    model = fitted["LogisticRegression"]
    damaged = scaled_probabilities(to_onnx(model), 1.001)
    labels, _ = run_onnx(damaged, wine.features)
    assert labels.tolist() == model.predict(wine.features).tolist()  # labels still agree
    parity = check_parity(damaged, model, wine.features)
    assert not parity.passed
    assert parity.label_mismatches == 0
    assert PARITY_TOLERANCE < parity.max_abs_diff < 0.0011  # a probability near 1, x 1.001
    assert parity.failure().startswith("probabilities differ by up to 0.00")


def test_a_graph_of_another_model_fails_on_its_labels(fitted, wine) -> None:
    other = to_onnx(fitted["DummyClassifier"])
    parity = check_parity(other, fitted["LogisticRegression"], wine.features)
    assert not parity.passed
    assert parity.label_mismatches > 50
    assert f"{parity.label_mismatches} of 178 labels differ" in parity.failure()


# --- real sessions against a real MLflow server (SQLite backend) ---------------------------


def _children(client: MlflowClient, experiment: str) -> dict[str, mlflow.entities.Run]:
    found = client.get_experiment_by_name(experiment)
    assert found is not None
    runs = client.search_runs([found.experiment_id], filter_string="tags.model_family != ''")
    return {run.info.run_name: run for run in runs if "mlflow.parentRunId" in run.data.tags}


@pytest.fixture(scope="module")
def names() -> dict[str, str]:
    suffix = uuid.uuid4().hex[:8]
    return {"WINE_EXPERIMENT_NAME": f"onnx-{suffix}", "WINE_MODEL_NAME": f"onnx-model-{suffix}"}


@pytest.fixture(scope="module")
def every_family(mlflow_server: MlflowServer, names) -> subprocess.CompletedProcess[str]:
    """A training process with every candidate family, the baseline included."""
    result = run_training(mlflow_server.url, candidates=",".join(CANDIDATES), **names)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.integration
@pytest.mark.parametrize("mlflow_server", ["sqlite"], indirect=True)
def test_every_candidate_run_logs_its_parity_figures(
    every_family, mlflow_server: MlflowServer, names
) -> None:
    children = _children(MlflowClient(mlflow_server.url), names["WINE_EXPERIMENT_NAME"])
    assert set(children) == set(CANDIDATES)
    for name, run in children.items():
        metrics = run.data.metrics
        assert set(ONNX_PARITY_METRICS) <= set(metrics), name
        assert metrics["onnx_label_mismatches"] == 0, name
        assert 0 <= metrics["onnx_max_abs_diff"] <= PARITY_TOLERANCE, name
        assert run.data.tags["onnx_parity"] == "passed"
        figure = f"{metrics['onnx_max_abs_diff']:.1e}"
        assert f"{name}: accuracy=" in every_family.stderr
        assert f"onnx_max_abs_diff={figure}" in every_family.stderr
    assert "is not registered" not in every_family.stderr


@pytest.mark.integration
@pytest.mark.parametrize("mlflow_server", ["sqlite"], indirect=True)
def test_the_registered_version_carries_an_onnx_model_that_answers_like_its_estimator(
    every_family, mlflow_server: MlflowServer, names, wine
) -> None:
    client = MlflowClient(mlflow_server.url)
    model = names["WINE_MODEL_NAME"]
    version = client.get_model_version_by_alias(model, "champion")
    repository = get_artifact_repository(
        client.get_model_version_download_uri(model, version.version),
        tracking_uri=mlflow_server.url,
    )
    files = {Path(a.path).name for a in repository.list_artifacts("extra_files")}
    assert files == {"model.onnx", "training_ranges.json"}

    served = load_version_files(client, mlflow_server.url, model, version.version, prefer_onnx=True)
    assert served.estimator is None
    assert served.onnx_model is not None
    full = load_version_files(client, mlflow_server.url, model, version.version)
    assert full.onnx_model == served.onnx_model
    labels, probabilities = onnxruntime_answers(served.onnx_model, wine.features)
    assert labels.tolist() == full.estimator.predict(wine.features).tolist()
    assert np.abs(probabilities - full.estimator.predict_proba(wine.features)).max() <= 1e-5


@pytest.mark.integration
@pytest.mark.parametrize("mlflow_server", ["sqlite"], indirect=True)
def test_a_candidate_whose_onnx_disagrees_is_not_registered_and_the_session_says_why(
    mlflow_server: MlflowServer,
    mlflow_process_uri: Callable[[str], None],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    convert = onnx_export.to_onnx

    def damaged_for_logistic_regression(model) -> bytes:
        graph = convert(model)
        return scaled_probabilities(graph, 1.01) if hasattr(model, "steps") else graph

    monkeypatch.setattr(onnx_export, "to_onnx", damaged_for_logistic_regression)
    suffix = uuid.uuid4().hex[:8]
    settings = TrainingSettings(
        tracking_uri=mlflow_server.url,
        experiment_name=f"onnx-bad-{suffix}",
        model_name=f"onnx-bad-model-{suffix}",
        candidates=("LogisticRegression", "DummyClassifier"),
        cv_folds=2,
        min_accuracy=0,
    )
    mlflow_process_uri(mlflow_server.url)
    with caplog.at_level(logging.INFO, logger="model_training.session"):
        result = run_session(load_dataset(), settings)

    client = MlflowClient(mlflow_server.url)
    # LogisticRegression scores 1.00 and the baseline 0.40: only the parity gate stops it
    versions = client.search_model_versions(f"name = '{settings.model_name}'")
    assert [v.tags["model_family"] for v in versions] == ["DummyClassifier"]
    assert result.version == versions[0].version
    assert result.decision.promote  # the rest of the session goes on: promotion included
    children = _children(client, settings.experiment_name)
    bad = children["LogisticRegression"].data
    lines = [r.getMessage() for r in caplog.records if "is not registered" in r.getMessage()]
    assert lines == [
        "[1/2] LogisticRegression is not registered: its ONNX model answers differently from "
        "scikit-learn on the 178 rows of the data set (probabilities differ by up to "
        f"{bad.metrics['onnx_max_abs_diff']:.3g} (tolerance 1e-05))"
    ]
    assert bad.metrics["onnx_max_abs_diff"] > PARITY_TOLERANCE
    assert bad.metrics["onnx_label_mismatches"] == 0
    assert bad.tags["onnx_parity"].startswith("failed: its ONNX model answers differently")
    assert children["DummyClassifier"].data.tags["onnx_parity"] == "passed"
