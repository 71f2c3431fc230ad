"""The training job against a real MLflow server, on SQLite and on PostgreSQL backends."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import mlflow
import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from sklearn.metrics import accuracy_score

from devstack import MlflowServer, free_port, run_training
from model_training.data import load_dataset
from model_training.evaluation import CANDIDATE_METRICS
from model_training.session import experiment_id, split_dataset
from model_training.settings import TrainingSettings
from wine_mlops.model_files import load_version_files
from wine_mlops.training_ranges import TrainingRanges

pytestmark = pytest.mark.integration

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
CANDIDATES = {
    "RandomForestClassifier",
    "KNeighborsClassifier",
    "SVC",
    "GradientBoostingClassifier",
    "LogisticRegression",
}


@pytest.fixture(scope="module")
def names() -> dict[str, str]:
    """Names unique to this module's run, so the shared server needs no cleaning."""
    suffix = uuid.uuid4().hex[:8]
    return {"WINE_EXPERIMENT_NAME": f"it-{suffix}", "WINE_MODEL_NAME": f"it-model-{suffix}"}


@pytest.fixture(scope="module")
def first_session(
    mlflow_server: MlflowServer, names: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """One full training session with every default candidate."""
    result = run_training(
        mlflow_server.url, cv_folds="3", GIT_COMMIT=COMMIT, BUILD_ID="17", **names
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _runs(client: MlflowClient, experiment: str) -> tuple[Run, list[Run]]:
    """The first session's parent run and its children."""
    found = client.get_experiment_by_name(experiment)
    assert found is not None
    runs = client.search_runs([found.experiment_id], filter_string="tags.session = 'training'")
    assert len(runs) == 1
    parent = runs[0]
    children = client.search_runs(
        [found.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    return parent, children


@pytest.fixture
def client(mlflow_server: MlflowServer) -> MlflowClient:
    mlflow.set_tracking_uri(mlflow_server.url)
    return MlflowClient(mlflow_server.url)


def test_session_logs_a_parent_run_with_one_child_per_candidate(
    first_session, client: MlflowClient, names: dict[str, str], tmp_path: Path
) -> None:
    experiment = client.get_experiment_by_name(names["WINE_EXPERIMENT_NAME"])
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1
    parent = parents[0]
    assert {r.info.run_name for r in children} == CANDIDATES
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in children)
    for child in children:
        for metric in CANDIDATE_METRICS:
            assert metric in child.data.metrics, (child.info.run_name, metric)
        assert child.data.params  # hyperparameters
    forest = next(r for r in children if r.info.run_name == "RandomForestClassifier")
    png = client.download_artifacts(
        forest.info.run_id, "evaluation/RandomForestClassifier-confusion_matrix.png", str(tmp_path)
    )
    assert Path(png).read_bytes().startswith(PNG_MAGIC)
    report = client.download_artifacts(
        forest.info.run_id, "evaluation/classification_report.txt", str(tmp_path)
    )
    assert "precision" in Path(report).read_text()
    assert "evaluation/feature_importances.csv" in {
        a.path for a in client.list_artifacts(forest.info.run_id, "evaluation")
    }
    heatmap = client.download_artifacts(
        parent.info.run_id, "dataset/correlation.png", str(tmp_path)
    )
    assert Path(heatmap).read_bytes().startswith(PNG_MAGIC)
    profile = client.download_artifacts(parent.info.run_id, "dataset/profile.csv", str(tmp_path))
    assert "proline" in Path(profile).read_text()
    assert parent.data.params["dataset_digest"] == load_dataset().digest
    assert parent.data.tags["promotion"] == "champion"


def test_the_experiment_opens_on_its_runs_and_says_what_it_holds(
    first_session, client: MlflowClient, names: dict[str, str]
) -> None:
    experiment = client.get_experiment_by_name(names["WINE_EXPERIMENT_NAME"])
    assert experiment is not None
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert "nested run per candidate" in experiment.tags["mlflow.note.content"]


def test_an_existing_experiment_gets_its_kind_and_description(
    mlflow_server: MlflowServer, client: MlflowClient
) -> None:
    name = f"plain-{uuid.uuid4().hex[:8]}"
    created = client.create_experiment(name, tags={"mlflow.note.content": "kept as it is"})
    assert experiment_id(client, name) == created
    tags = client.get_experiment(created).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    assert tags["mlflow.note.content"] == "kept as it is"
    fresh = experiment_id(client, f"fresh-{uuid.uuid4().hex[:8]}")
    tags = client.get_experiment(fresh).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    assert tags["mlflow.note.content"].startswith("Wine cultivar classifier training")


def test_every_run_names_its_git_commit_and_source(
    first_session, client: MlflowClient, names: dict[str, str]
) -> None:
    parent, children = _runs(client, names["WINE_EXPERIMENT_NAME"])
    for run in [parent, *children]:
        tags = run.data.tags
        assert tags["mlflow.source.git.commit"] == COMMIT, run.info.run_name
        assert tags["mlflow.source.name"].startswith("model_training"), run.info.run_name
        assert tags["ci_build_id"] == "17", run.info.run_name
        assert "git_commit" not in tags


def test_every_candidate_logs_the_sessions_dataset_as_its_input(
    first_session, client: MlflowClient, names: dict[str, str]
) -> None:
    parent, children = _runs(client, names["WINE_EXPERIMENT_NAME"])
    assert parent.inputs is not None
    [parent_input] = parent.inputs.dataset_inputs
    digest = parent_input.dataset.digest
    assert parent_input.dataset.name == "wine"
    assert len(children) == len(CANDIDATES)
    for child in children:
        assert child.inputs is not None, child.info.run_name
        [child_input] = child.inputs.dataset_inputs
        assert child_input.dataset.digest == digest, child.info.run_name
        assert child_input.dataset.name == "wine"
        assert {t.key: t.value for t in child_input.tags}["mlflow.data.context"] == "training"


def test_every_candidate_has_curves_and_feature_importance(
    first_session, client: MlflowClient, names: dict[str, str], tmp_path: Path
) -> None:
    _, children = _runs(client, names["WINE_EXPERIMENT_NAME"])
    for child in children:
        name = child.info.run_name
        logged = {a.path for a in client.list_artifacts(child.info.run_id, "evaluation")}
        pictures = {
            f"evaluation/{name}-{stem}.png"
            for stem in ("confusion_matrix", "roc_curves", "precision_recall_curves", "importances")
        }
        assert pictures | {"evaluation/feature_importances.csv"} <= logged, name
        for path in pictures:
            local = client.download_artifacts(child.info.run_id, path, str(tmp_path))
            assert Path(local).read_bytes().startswith(PNG_MAGIC), path
        csv = client.download_artifacts(
            child.info.run_id, "evaluation/feature_importances.csv", str(tmp_path)
        )
        header, *rows = Path(csv).read_text().splitlines()
        assert len(rows) == 13, name
        own = name in {"RandomForestClassifier", "GradientBoostingClassifier"}
        method = child.data.tags["feature_importance_method"]
        assert method == ("model" if own else "permutation"), name
        assert header == ("feature,importance" if own else "feature,importance,std"), name


def test_best_candidate_is_registered_as_champion_and_predicts_well(
    first_session, client: MlflowClient, names: dict[str, str]
) -> None:
    model = names["WINE_MODEL_NAME"]
    champion = client.get_model_version_by_alias(model, "champion")
    assert champion.version == "1"
    assert champion.run_id is not None
    accuracy = client.get_run(champion.run_id).data.metrics["accuracy"]
    assert accuracy >= 0.95
    # the version carries its promotion facts only; its test metrics stay on its run
    assert set(champion.tags) == {"model_family", "promotion", "promotion_reason"}
    assert champion.tags["promotion"] == "champion"
    loaded = mlflow.sklearn.load_model(f"models:/{model}@champion")
    data = load_dataset()
    assert accuracy_score(data.target, loaded.predict(data.features)) >= 0.95
    signature = mlflow.models.get_model_info(f"models:/{model}@champion").signature
    assert signature.inputs.input_names() == list(data.features.columns)
    assert "registered" in first_session.stderr
    assert "as champion" in first_session.stderr
    description = client.get_registered_model(model).description or ""
    assert "13 chemical features" in description
    assert "one of 3" in description
    assert "`challenger`" in description
    family = champion.tags["model_family"]
    about = champion.description or ""
    assert about.startswith(f"{family}, trained on sklearn.datasets.load_wine")
    assert f"accuracy {accuracy:.4f}" in about
    assert "Registered as `champion`: " in about


def test_the_registered_version_carries_the_ranges_of_its_training_split(
    first_session, mlflow_server: MlflowServer, client: MlflowClient, names: dict[str, str]
) -> None:
    model = names["WINE_MODEL_NAME"]
    loaded = load_version_files(client, mlflow_server.url, model, "1")
    fields = TrainingSettings.model_fields  # the session ran with the default split
    data = load_dataset()
    split = split_dataset(data, fields["test_size"].default, fields["seed"].default)
    assert loaded.training_ranges == TrainingRanges.of(split.x_train)
    assert loaded.training_ranges.rows == len(split.y_train) == 133
    # the training rows' ranges, not the whole data set's: e.g. proline reaches 1680 mg/L
    # in scikit-learn's data, but its highest training value is lower
    proline = loaded.training_ranges.features["proline"]
    assert proline.max < float(data.features["proline"].max()) == 1680.0
    assert proline.max == float(split.x_train["proline"].max())


def test_a_worse_candidate_never_moves_the_champion(
    first_session, mlflow_server: MlflowServer, client: MlflowClient, names: dict[str, str]
) -> None:
    # No floor: the baseline is turned down for being worse than the champion, not for the floor.
    result = run_training(
        mlflow_server.url,
        candidates="DummyClassifier",
        WINE_MIN_ACCURACY="0",
        **names,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    model = names["WINE_MODEL_NAME"]
    assert client.get_model_version_by_alias(model, "champion").version == "1"
    challenger = client.get_model_version_by_alias(model, "challenger")
    assert challenger.version == "2"
    assert "worse than champion v1" in challenger.tags["promotion_reason"]
    about = challenger.description or ""
    assert about.startswith("DummyClassifier, trained on")
    assert "Registered as `challenger`: " in about
    assert "worse than champion v1" in about
    assert "champion v1 stays" in result.stderr


def test_a_rejected_dataset_logs_nothing(
    mlflow_server: MlflowServer, client: MlflowClient, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("alcohol,target\n13.2,0\nabc,5\n")
    experiment = f"rejected-{uuid.uuid4().hex[:8]}"
    result = run_training(mlflow_server.url, "--data", str(bad), WINE_EXPERIMENT_NAME=experiment)
    assert result.returncode == 2
    assert "missing columns: malic_acid" in result.stderr
    assert "unknown label(s) '5'" in result.stderr
    assert "non-numeric" in result.stderr
    assert client.get_experiment_by_name(experiment) is None


def test_unreachable_server_gives_a_clear_error_after_bounded_retries() -> None:
    result = run_training(
        f"http://127.0.0.1:{free_port()}",
        WINE_MLFLOW_CONNECT_ATTEMPTS="3",
        WINE_MLFLOW_CONNECT_MAX_BACKOFF="0.2",
    )
    assert result.returncode == 3
    assert "unreachable after 3 attempts" in result.stderr
    assert result.stderr.count("retrying") == 2


def test_a_refused_login_gives_a_clear_error_and_logs_nothing(
    mlflow_server: MlflowServer, client: MlflowClient
) -> None:
    experiment = f"refused-{uuid.uuid4().hex[:8]}"
    result = run_training(
        mlflow_server.url,
        MLFLOW_TRACKING_USERNAME="trainer",
        MLFLOW_TRACKING_PASSWORD="not-the-trainer-password",
        WINE_EXPERIMENT_NAME=experiment,
    )
    assert result.returncode == 3
    assert "refused the login of user 'trainer' (HTTP 401)" in result.stderr
    assert "Traceback" not in result.stderr
    assert client.get_experiment_by_name(experiment) is None
