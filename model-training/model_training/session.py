"""One training session: train every candidate, log it, register the best, decide promotion."""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import logging
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import requests
from mlflow.data.pandas_dataset import PandasDataset, from_pandas
from mlflow.entities import Run, RunStatus
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient
from sklearn.model_selection import train_test_split

from model_training import artifacts, interruption, onnx_export
from model_training.candidates import build_candidates, model_params
from model_training.data import Dataset, Feedback
from model_training.evaluation import (
    ONNX_DIFF_METRIC,
    ONNX_MISMATCH_METRIC,
    Evaluation,
    Split,
    evaluate,
    score_on_test_set,
)
from model_training.interruption import TrainingInterrupted
from model_training.promotion import Decision, decide
from model_training.promotion_lock import PromotionLock
from model_training.settings import TrainingSettings
from wine_mlops.features import CLASS_IDS, CLASS_NAMES, FEATURE_NAMES, TARGET, class_name
from wine_mlops.model_files import (
    ONNX_MODEL_FILE,
    TRUSTED_TYPES,
    ModelFiles,
    UnsafeModelError,
    load_model_version,
    load_version_files,
)
from wine_mlops.tracking import version_by_alias, wait_for_tracking_server
from wine_mlops.training_ranges import TRAINING_RANGES_FILE, TrainingRanges

log = logging.getLogger(__name__)

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
"""MLflow 3's UI opens an experiment of kind ``custom_model_development`` on its runs (not on
the GenAI traces view)."""
EXPERIMENT_KIND = "custom_model_development"
DESCRIPTION_TAG = "mlflow.note.content"
"""Where MLflow keeps an experiment's (or a run's) description."""
SOURCE_NAME = "model_training (python -m model_training)"

#: The tag saying what started a session's runs: ``alert`` (the retraining webhook), ``ci``
#: (a CI build, ``BUILD_ID`` set) or ``manual``.
TRIGGER_TAG = "wine.trigger"
#: The tag naming the alert that started a session (``--triggered-by``).
TRIGGER_ALERT_TAG = "wine.trigger.alert"
#: The metric of a session trained with feedback: the labelled production rows it added to
#: its training split (on the parent run and on every candidate's run).
FEEDBACK_ROWS_METRIC = "feedback_rows"
#: The source of the feedback rows' MLflow input (context ``feedback``).
FEEDBACK_INPUT_SOURCE = "prediction log (labelled production rows)"

EXPERIMENT_DESCRIPTION = (
    "Wine cultivar classifier training. Each training session is a parent run (dataset, "
    "profile, correlation heatmap, the decision) with one nested run per candidate model "
    "family (metrics, confusion matrix, ROC and precision-recall curves, feature importance, "
    "the logged model). The best candidate of a session is registered; see the registered "
    "model for how `champion` and `challenger` are chosen."
)


def model_description(champion_alias: str, challenger_alias: str, min_accuracy: float) -> str:
    """The registered model's description: what it predicts and how its aliases move."""
    return (
        f"Predicts the cultivar of a wine (one of {len(CLASS_NAMES)}: "
        f"{', '.join(CLASS_NAMES)}) from {len(FEATURE_NAMES)} chemical features "
        f"({', '.join(FEATURE_NAMES)}), scikit-learn pipelines trained on the UCI wine data.\n\n"
        "Each training session registers its best candidate (highest test accuracy, then macro "
        "F1, then lower log loss). The new version becomes "
        f"`{champion_alias}` (the one served) when its test accuracy reaches "
        f"{min_accuracy:.2f} and it beats the current `{champion_alias}` re-scored on the "
        f"same test set; the replaced version becomes `{challenger_alias}` (the one to fall "
        f"back to). A version that is not promoted becomes `{challenger_alias}`, and "
        f"`{champion_alias}` stays."
    )


def version_description(
    best: Evaluation, alias: str, reason: str, dataset: Dataset, feedback_rows: int | None = None
) -> str:
    """A registered version's description: its family, test metrics and promotion decision."""
    m = best.metrics
    extra = (
        ""
        if feedback_rows is None
        else f" plus {feedback_rows} labelled production row(s) in its training split"
    )
    return (
        f"{best.name}, trained on {dataset.source} (digest {dataset.digest}){extra}. Test set: "
        f"accuracy {m['accuracy']:.4f}, macro F1 {m['f1_macro']:.4f}, log loss "
        f"{m['log_loss']:.4f}, ROC AUC (one-vs-rest) {m['roc_auc_ovr']:.4f}; cross-validation "
        f"accuracy {m['cv_accuracy_mean']:.4f} ± {m['cv_accuracy_std']:.4f}.\n\n"
        f"Registered as `{alias}`: {reason}."
    )


def version_tags(model_family: str, alias: str, reason: str) -> dict[str, str]:
    """The tags of a registered version: its promotion facts, nothing else.

    Test metrics live on the version's run (``client.get_run(version.run_id).data.metrics``),
    where the API, the exporter and MLflow's run comparison read them; the dataset is the run's
    input. The registry's version table stays readable with three tags.

    Args:
        model_family: The candidate's estimator class, e.g. ``"SVC"``.
        alias: The alias the version got (champion or challenger).
        reason: Why it got that alias.
    """
    return {"model_family": model_family, "promotion": alias, "promotion_reason": reason}


#: The ``promotion`` tag of a champion's ONNX twin (:func:`_give_champion_onnx_twin`).
ONNX_TWIN_PROMOTION = "onnx-twin"
#: The tag naming the version an ONNX twin was made from.
ONNX_TWIN_OF_TAG = "onnx_twin_of"


class ChampionRefusedError(RuntimeError):
    """The current champion cannot be loaded safely: the session stops without registering.

    Args:
        model_name: The registered model.
        version: The champion's version.
        error: Why it was refused.
    """

    def __init__(self, model_name: str, version: str, error: UnsafeModelError) -> None:
        super().__init__(
            f"champion {model_name} v{version} was refused: {error.reason}; nothing was "
            "registered and no alias moved. Point the champion alias at a trusted version "
            "(or delete it) and train again"
        )
        self.version = version
        self.error = error


class SessionFailedError(RuntimeError):
    """Logging the runs or models failed before anything was registered (e.g. a full disk).

    The message is one line: what failed, that the registry and ``champion`` are unchanged,
    and what to do.
    """


@dataclass(frozen=True)
class SessionResult:
    """What a session produced: the parent run, the registered version, the decision."""

    parent_run_id: str
    experiment_id: str
    version: str
    decision: Decision


def split_dataset(dataset: Dataset, test_size: float, seed: int) -> Split:
    """Splits a dataset into stratified train and test parts, reproducibly for a seed."""
    x_train, x_test, y_train, y_test = train_test_split(
        dataset.features,
        dataset.target,
        test_size=test_size,
        random_state=seed,
        stratify=dataset.target,
    )
    return Split(x_train, x_test, y_train, y_test)


def add_feedback(split: Split, feedback: Feedback) -> Split:
    """The split with the feedback rows added to its training part; the test part unchanged.

    The held-out test rows stay those of the original data (same seed, same rows as a
    session without feedback), so the promotion gate compares the candidates and the
    champion on data no feedback touched: wrong labels in the feedback can make a candidate
    worse, never make it look better than it is.
    """
    x_train = pd.concat([split.x_train, feedback.features], ignore_index=True)
    y_train = pd.concat([split.y_train, feedback.target], ignore_index=True).rename(TARGET)
    return Split(x_train, split.x_test, y_train, split.y_test)


def trigger_tags(settings: TrainingSettings, alertname: str | None) -> dict[str, str]:
    """What started the session, as run tags (:data:`TRIGGER_TAG`, :data:`TRIGGER_ALERT_TAG`)."""
    if alertname:
        return {TRIGGER_TAG: "alert", TRIGGER_ALERT_TAG: alertname}
    return {TRIGGER_TAG: "ci" if settings.build_id else "manual"}


def _test_rows_in_feedback(split: Split, feedback: Feedback) -> int:
    """How many feedback rows repeat a held-out test row exactly (features only)."""
    if not len(feedback):
        return 0
    test = set(split.x_test.itertuples(index=False, name=None))
    return sum(row in test for row in feedback.features.itertuples(index=False, name=None))


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],  # noqa: S607 (optional; absent in images)
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _mlflow_dataset(dataset: Dataset) -> PandasDataset:
    """The dataset as MLflow's input entity (features and target), built once per session."""
    frame = dataset.features.assign(**{TARGET: dataset.target})
    return from_pandas(frame, source=dataset.source, name="wine", targets=TARGET)


def _log_input(wine: PandasDataset) -> None:
    """Logs the dataset as an input of the active run (the same entity, so one digest)."""
    try:
        mlflow.log_input(wine, context="training")
    except MlflowException as exc:
        # The server adds a dataset to an experiment by "look up, else insert": two sessions
        # logging the same new dataset at once make one insert fail on the unique key. The
        # other's row exists by then, so a second attempt links it.
        log.warning("logging the dataset failed (%s); trying once more", _first_line(exc, 120))
        mlflow.log_input(wine, context="training")


def _log_dataset(
    dataset: Dataset, wine: PandasDataset, settings: TrainingSettings, workdir: Path
) -> None:
    """Logs the parent run's dataset facts: input, profile table, correlation heatmap."""
    frame = wine.df
    _log_input(wine)
    mlflow.log_params(
        {
            "dataset_source": dataset.source,
            "dataset_digest": dataset.digest,
            "dataset_rows": len(frame),
            "seed": settings.seed,
            "test_size": settings.test_size,
            "cv_folds": settings.cv_folds,
            "candidates": ",".join(settings.candidates),
        }
    )
    profile = artifacts.dataset_profile(dataset.features)
    mlflow.log_table(profile.reset_index(), artifact_file="dataset/profile.json")
    profile.to_csv(workdir / "profile.csv")
    mlflow.log_artifact(str(workdir / "profile.csv"), artifact_path="dataset")
    heatmap = artifacts.save_correlation_heatmap(dataset.features, workdir / "correlation.png")
    mlflow.log_artifact(str(heatmap), artifact_path="dataset")


def _log_feedback(feedback: Feedback) -> None:
    """Logs the parent run's feedback facts: the row count (metric), the rows (an input)."""
    mlflow.log_metric(FEEDBACK_ROWS_METRIC, len(feedback))
    mlflow.log_param("feedback_source", feedback.source)
    if feedback.rejected_count:
        mlflow.log_param("feedback_rows_rejected", feedback.rejected_count)
    if not len(feedback):
        return
    frame = feedback.features.assign(**{TARGET: feedback.target})
    # MLflow resolves a source by its scheme and knows none for database URLs: the input
    # names the log in words, the param above gives its URL (without password)
    rows = from_pandas(frame, source=FEEDBACK_INPUT_SOURCE, name="wine-feedback", targets=TARGET)
    mlflow.log_input(rows, context="feedback")


@functools.cache
def model_requirements() -> tuple[str, ...]:
    """Pinned packages a logged model needs to load, from this environment.

    Given to ``log_model`` so MLflow does not infer them, which costs about 5 s a model
    (it reloads the model in a subprocess to watch its imports). The ONNX file logged among
    the model's extra files needs none of them, and loading the sklearn flavor does not need
    skl2onnx, onnx or onnxruntime: whoever serves the ONNX file brings onnxruntime itself.
    """
    packages = ("scikit-learn", "skops", "numpy", "scipy", "pandas")
    return tuple(f"{name}=={importlib.metadata.version(name)}" for name in packages)


@dataclass(frozen=True)
class OnnxCheck:
    """The outcome of converting a candidate to ONNX and checking its answers.

    Attributes:
        path: The ONNX file to log with the model, or None when the candidate failed.
        parity: The comparison with the estimator, or None when conversion failed.
        failure: Why the candidate failed (empty when it passed).
    """

    path: Path | None
    parity: onnx_export.Parity | None
    failure: str = ""


def convert_to_onnx(model: Any, features: pd.DataFrame, folder: Path) -> OnnxCheck:
    """Converts a fitted estimator to ONNX and compares its answers on every given row.

    Logs nothing: :func:`_convert_candidate` logs the figures of a candidate, and
    :func:`_give_champion_onnx_twin` those of a champion logged before training wrote ONNX.
    The file is written only when the graph answers like the estimator
    (:data:`model_training.onnx_export.PARITY_TOLERANCE`).

    Args:
        model: The fitted classifier (or pipeline).
        features: The rows to compare on: the session's whole data set.
        folder: Where the ONNX file goes (created).
    """
    try:
        graph = onnx_export.to_onnx(model)
    except onnx_export.ConversionError as exc:
        return OnnxCheck(None, None, f"it cannot be converted to ONNX: {exc}")
    parity = onnx_export.check_parity(graph, model, features)
    if not parity.passed:
        return OnnxCheck(
            None,
            parity,
            f"its ONNX model answers differently from scikit-learn on the {parity.rows} rows "
            f"of the data set ({parity.failure()})",
        )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ONNX_MODEL_FILE
    path.write_bytes(graph)
    return OnnxCheck(path, parity)


def _log_parity(check: OnnxCheck) -> None:
    """Logs a check's figures and outcome in the active run (``onnx_parity`` tag)."""
    if check.parity is not None:
        mlflow.log_metrics(
            {
                ONNX_DIFF_METRIC: check.parity.max_abs_diff,
                ONNX_MISMATCH_METRIC: check.parity.label_mismatches,
            }
        )
    mlflow.set_tag("onnx_parity", f"failed: {check.failure}"[:500] if check.failure else "passed")


def _convert_candidate(result: Evaluation, dataset: Dataset, folder: Path) -> OnnxCheck:
    """Converts a fitted candidate to ONNX and compares its answers on every row of the data.

    Logs ``onnx_max_abs_diff`` and ``onnx_label_mismatches`` (and an ``onnx_parity`` tag) in
    the active (child) run (:func:`convert_to_onnx`, :func:`_log_parity`).
    """
    check = convert_to_onnx(result.model, dataset.features, folder)
    _log_parity(check)
    return check


def _log_candidate(
    result: Evaluation, split: Split, workdir: Path, onnx_file: Path | None = None
) -> str:
    """Logs one fitted candidate in the active (child) run; returns its model URI.

    The model's extra files are its training ranges and, when it passed the parity check,
    its ONNX file (``extra_files/model.onnx``).
    """
    mlflow.log_params(model_params(result.model))
    mlflow.log_metrics(result.metrics)
    cm_path = artifacts.save_confusion_matrix(
        result.confusion,
        [class_name(c) for c in CLASS_IDS],
        f"{result.name} (test set)",
        workdir / f"{result.name}-confusion_matrix.png",
    )
    mlflow.log_artifact(str(cm_path), artifact_path="evaluation")
    mlflow.log_text(result.report, "evaluation/classification_report.txt")
    class_ids = [int(c) for c in result.model.classes_]
    class_names = [class_name(c) for c in class_ids]
    for save, stem, label in (
        (artifacts.save_roc_curves, "roc_curves", "ROC, one-vs-rest"),
        (artifacts.save_precision_recall_curves, "precision_recall_curves", "precision-recall"),
    ):
        png = save(
            split.y_test.to_numpy(),
            result.probabilities,
            class_ids,
            class_names,
            f"{result.name} {label} (test set)",
            workdir / f"{result.name}-{stem}.png",
        )
        mlflow.log_artifact(str(png), artifact_path="evaluation")
    permutation = result.importance_method == "permutation"
    mlflow.log_text(result.feature_importances.to_csv(), "evaluation/feature_importances.csv")
    png = artifacts.save_feature_importances(
        result.feature_importances,
        f"{result.name} {'permutation importance' if permutation else 'feature importances'}",
        workdir / f"{result.name}-importances.png",
        xlabel="mean drop of test accuracy when shuffled" if permutation else "importance",
    )
    mlflow.log_artifact(str(png), artifact_path="evaluation")
    mlflow.set_tag("feature_importance_method", result.importance_method)
    ranges = write_training_ranges(split, workdir / result.name)
    extra = [ranges] if onnx_file is None else [ranges, onnx_file]
    return log_model(result.model, split, result.predictions, extra)


def log_model(estimator: Any, split: Split, predictions: Any, extra_files: list[Path]) -> str:
    """Logs a fitted estimator as the active run's model (skops) with its extra files.

    Returns:
        The logged model's URI.
    """
    # The MLmodel file records these types, but loaders ignore that record and trust only
    # wine_mlops.model_files.TRUSTED_TYPES: a type missing there fails here, not in serving.
    info = mlflow.sklearn.log_model(
        estimator,
        name="model",
        signature=infer_signature(split.x_test, predictions),
        input_example=split.x_test.head(3),
        skops_trusted_types=list(TRUSTED_TYPES),
        pip_requirements=list(model_requirements()),
        extra_files=[str(path) for path in extra_files],
    )
    return str(info.model_uri)


def write_training_ranges(split: Split, folder: Path) -> Path:
    """Writes the training split's per-feature min and max as the model's ranges file.

    Logged among the model's own files (``extra_files/training_ranges.json``), so every
    registered version carries the ranges of the rows it was fitted on: the prediction API
    warns about inputs outside them.

    Args:
        split: The session's split; only its training rows count.
        folder: A folder of its own for the file (created).
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / TRAINING_RANGES_FILE
    path.write_text(TrainingRanges.of(split.x_train).model_dump_json(indent=1), encoding="utf-8")
    return path


def _champion_metrics(
    client: MlflowClient, settings: TrainingSettings, split: Split
) -> tuple[str | None, dict[str, float] | None]:
    """Reloads the current champion safely and scores it on this session's test set.

    The champion is downloaded and loaded by :func:`wine_mlops.model_files.load_model_version`
    (size limit, skops only, our own trusted types, wine signature and classes). A champion
    that fails those checks is an error, not an absent champion: treating it as absent
    would let this session replace it silently, and keeping it would score a model no one
    may load. The session stops before registering anything, so the operator decides.

    Returns:
        The champion's version and its test metrics, or ``(None, None)`` without a champion.

    Raises:
        ChampionRefusedError: When the champion is refused by the safe loader.
    """
    version = version_by_alias(client, settings.model_name, settings.champion_alias)
    if version is None:
        return None, None
    try:
        model: Any = load_model_version(
            client, settings.tracking_uri, settings.model_name, str(version.version)
        )
    except UnsafeModelError as exc:
        raise ChampionRefusedError(settings.model_name, str(version.version), exc) from None
    return version.version, score_on_test_set(model, split.x_test, split.y_test)


def _give_champion_onnx_twin(
    client: MlflowClient,
    settings: TrainingSettings,
    lock: PromotionLock,
    split: Split,
    dataset: Dataset,
) -> None:
    """Gives a champion registered before training wrote ONNX its ONNX twin, and serves it.

    The prediction API serves only versions carrying ``extra_files/model.onnx``; a champion
    logged by an earlier version of the stack has none, and a session's candidates replace it
    only when one is at least as good. So, under the promotion lock and before the champion
    is scored: when the champion has no ONNX model, its estimator (loaded safely) is
    converted and checked exactly as a candidate is (:func:`convert_to_onnx`, on the
    session's whole data set), logged again with the ONNX file in the champion's own run
    (same metrics, params and dataset input), registered as a new version with the old
    version's tags and description (plus ``promotion=onnx-twin``, ``onnx_twin_of`` and the
    reason), and ``champion`` moves to it: the same model, with the same scores. The old
    version stays as it was. One line says what happened.

    Anything that goes wrong here (no converter, answers that differ, MLflow refusing a
    write) moves nothing: one warning line says that the API cannot serve the champion, and
    the session goes on comparing its candidates with it. A champion the safe loader refuses
    is left to :func:`_champion_metrics`, which stops the session as before.
    """
    version = version_by_alias(client, settings.model_name, settings.champion_alias)
    if version is None:
        return
    number = str(version.version)
    label = f"{settings.champion_alias} v{number}"
    try:
        files = load_version_files(
            client, settings.tracking_uri, settings.model_name, number, prefer_onnx=True
        )
    except UnsafeModelError:
        return  # refused: _champion_metrics says why and stops the session
    except (MlflowException, requests.RequestException, OSError) as exc:
        log.warning(
            "could not check whether %s has an ONNX model (%s); this session's candidates "
            "are compared with it as usual",
            label,
            _first_line(exc, 160),
        )
        return
    if files.onnx_model is not None:
        return
    with tempfile.TemporaryDirectory(prefix="wine-onnx-twin-") as tmp:
        folder = Path(tmp)
        try:
            check = convert_to_onnx(files.estimator, dataset.features, folder)
        except Exception as exc:  # onnxruntime refusing the graph, or anything unforeseen
            check = OnnxCheck(None, None, f"checking its ONNX model failed ({_first_line(exc)})")
        if check.path is None or check.parity is None:
            log.warning(
                "%s has no ONNX model and none could be made (%s): the prediction API cannot "
                "serve it; this session's candidates are compared with it as usual",
                label,
                check.failure,
            )
            return
        try:
            twin = _register_onnx_twin(
                client, settings, lock, version, files, check.path, check.parity, split, dataset
            )
        except (MlflowException, requests.RequestException, OSError) as exc:
            log.warning(
                "%s has no ONNX model and registering its ONNX twin failed (%s): the "
                "prediction API cannot serve it; this session's candidates are compared with "
                "it as usual",
                label,
                _first_line(exc, 160),
            )
            return
    log.info(
        "%s has no ONNX model: registered its ONNX twin v%s (max |Δp| %.1e) and moved %s to it",
        label,
        twin,
        check.parity.max_abs_diff,
        settings.champion_alias,
    )


def _register_onnx_twin(
    client: MlflowClient,
    settings: TrainingSettings,
    lock: PromotionLock,
    version: ModelVersion,
    files: ModelFiles,
    onnx_file: Path,
    parity: onnx_export.Parity,
    split: Split,
    dataset: Dataset,
) -> str:
    """Logs the champion's estimator with its ONNX file in its own run, registers it, and
    moves ``champion`` to it; returns the new version (see :func:`_give_champion_onnx_twin`).

    The run is resumed for the logging and left with its former status and end time.
    """
    number = str(version.version)
    if not version.run_id:
        raise MlflowException(f"version {number} has no run to log its ONNX twin in")
    folder = onnx_file.parent
    if files.training_ranges is not None:
        ranges = folder / TRAINING_RANGES_FILE
        ranges.write_text(files.training_ranges.model_dump_json(indent=1), encoding="utf-8")
        about_ranges = f"Its training ranges are those version {number} carries."
    else:
        ranges = write_training_ranges(split, folder)
        about_ranges = (
            f"Version {number} carried no training ranges: the ranges logged here are those of "
            f"the training split of the session that made this twin ({len(split.y_train)} rows "
            f"of {dataset.source}), not necessarily the rows version {number} was fitted on."
        )
    estimator = files.estimator
    run = client.get_run(version.run_id).info
    mlflow.start_run(run_id=version.run_id, nested=True)
    try:
        _log_parity(OnnxCheck(onnx_file, parity))
        model_uri = log_model(
            estimator, split, estimator.predict(split.x_test), [Path(ranges), Path(onnx_file)]
        )
    finally:
        try:
            mlflow.end_run(run.status)
        finally:
            # the run was resumed, not rerun: it keeps its status and end time
            client.set_terminated(version.run_id, run.status, run.end_time)
    reason = (
        f"ONNX twin of v{number}: the same estimator from the same run, logged with an ONNX "
        f"model that answers like it on the {parity.rows} rows of the data set (labels equal, "
        f"max |Δp| {parity.max_abs_diff:.1e}); {settings.champion_alias} moved here from "
        f"v{number}, which the prediction API cannot serve"
    )
    before = (version.description or "").strip()
    description = (
        (f"{before}\n\n" if before else "")
        + f"ONNX twin of version {number}: the same estimator and run, logged again with its "
        f"ONNX model (extra_files/{ONNX_MODEL_FILE}), which answered like it on the "
        f"{parity.rows} rows of {dataset.source} (labels equal, max |Δp| "
        f"{parity.max_abs_diff:.1e}). `{settings.champion_alias}` moved here from version "
        f"{number}, which has no ONNX model for the prediction API. {about_ranges}"
    )
    tags = dict(version.tags) | {
        "promotion": ONNX_TWIN_PROMOTION,
        "promotion_reason": reason,
        ONNX_TWIN_OF_TAG: number,
    }
    lock.check()
    with interruption.deferred("registering the champion's ONNX twin"):
        twin = mlflow.register_model(model_uri, settings.model_name, tags=tags)
        client.set_registered_model_alias(
            settings.model_name, settings.champion_alias, twin.version
        )
    try:
        client.update_model_version(settings.model_name, twin.version, description=description)
    except (MlflowException, requests.RequestException) as exc:
        log.warning("could not write the ONNX twin's description: %s", _first_line(exc, 160))
    return str(twin.version)


def experiment_id(client: MlflowClient, name: str) -> str:
    """The id of the experiment ``name``, created if it does not exist yet.

    Two sessions may create it at the same moment: the one whose creation is refused
    (``RESOURCE_ALREADY_EXISTS``) reads the other's by name. Runs are then started with this
    id, never through MLflow's active experiment, so no run can land in another experiment.
    The experiment carries its kind (so MLflow's UI opens on the runs) and a description;
    an existing experiment lacking them gets them (the trainer has ``EDIT`` on it).
    """
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            created = client.create_experiment(
                name,
                tags={
                    EXPERIMENT_KIND_TAG: EXPERIMENT_KIND,
                    DESCRIPTION_TAG: EXPERIMENT_DESCRIPTION,
                },
            )
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            experiment = client.get_experiment_by_name(name)
            if experiment is None:  # created and deleted meanwhile: nothing sensible to log into
                raise
        else:
            log.info("created the MLflow experiment %r (id %s)", name, created)
            return str(created)
    if experiment.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
        client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    if not experiment.tags.get(DESCRIPTION_TAG):
        client.set_experiment_tag(experiment.experiment_id, DESCRIPTION_TAG, EXPERIMENT_DESCRIPTION)
    return str(experiment.experiment_id)


@contextlib.contextmanager
def tracked_run(**kwargs: Any) -> Iterator[Run]:
    """``mlflow.start_run`` whose run ends ``KILLED`` when a stop signal ends the session.

    MLflow's own context manager ends a run ``FAILED`` on any exception; a session stopped
    by SIGTERM or SIGINT was killed, not failed. Starting and finishing the run hold the
    signal back, so no run is left ``RUNNING`` by a signal arriving in between.

    Args:
        **kwargs: Passed to ``mlflow.start_run`` (``experiment_id``, ``run_name``, ``nested``).
    """
    run: Run | None = None
    try:
        with interruption.deferred("starting a run"):
            run = mlflow.start_run(**kwargs)
        yield run
    except TrainingInterrupted:
        if run is not None:
            _end_run(run, RunStatus.KILLED)
        raise
    except BaseException:
        if run is not None:
            _end_run(run, RunStatus.FAILED)
        raise
    with interruption.deferred("finishing a run"):
        _end_run(run, RunStatus.FINISHED)


def _end_run(run: Run, status: int) -> None:
    """Ends this run (the active one, or by id if an inner run is still active)."""
    active = mlflow.active_run()
    if active is not None and active.info.run_id == run.info.run_id:
        mlflow.end_run(RunStatus.to_string(status))
    else:
        MlflowClient().set_terminated(run.info.run_id, RunStatus.to_string(status))


def _first_line(error: BaseException, limit: int = 240) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _unchanged_champion(client: MlflowClient, settings: TrainingSettings) -> str:
    """``champion vN is unchanged`` for an error message, as far as MLflow still answers."""
    try:
        version = version_by_alias(client, settings.model_name, settings.champion_alias)
    except Exception:  # only for a message
        return f"{settings.champion_alias} is unchanged"
    if version is None:
        return f"no version is {settings.champion_alias}"
    return f"{settings.champion_alias} v{version.version} is unchanged"


def run_session(
    dataset: Dataset,
    settings: TrainingSettings,
    *,
    feedback: Feedback | None = None,
    triggered_by: str | None = None,
) -> SessionResult:
    """Trains, logs, registers and (maybe) promotes, as one parent run with nested runs.

    The session logs through MLflow's fluent API into the process's tracking server, which
    the caller sets beforehand with ``settings.use_tracking_uri()`` (the CLI does; the stack's
    rule is that only entry points set MLflow's process-wide state). Runs are started by
    experiment id and tracked per thread, so sessions may run in parallel threads.

    Args:
        dataset: A validated dataset.
        settings: The session settings.
        feedback: Labelled production rows to add to the training split only
            (:func:`add_feedback`); every run then carries the metric ``feedback_rows``.
        triggered_by: The alert that started the session (tags :data:`TRIGGER_TAG` and
            :data:`TRIGGER_ALERT_TAG` on every run).

    Returns:
        The registered version and the promotion decision.

    Raises:
        RuntimeError: When the process's tracking URI is not ``settings.tracking_uri``.
        TrackingServerUnavailableError: When MLflow cannot be reached.
        SessionFailedError: When logging a run, an artifact or a model fails (e.g. the artifact
            store is full); the runs end as failed, nothing is registered.
        ChampionRefusedError: When the current champion cannot be loaded safely; the runs
            are logged (and end as failed), nothing is registered and no alias moves.
        PromotionLockTimeoutError: When another session holds the promotion lock too long.
        TrainingInterrupted: When SIGTERM or SIGINT stopped the session; its runs end as
            killed, and the registry holds either a complete new version or none.
    """
    split = split_dataset(dataset, settings.test_size, settings.seed)
    log.info(
        "dataset %s: %d rows (digest %s), %d for training, %d for testing",
        dataset.source,
        len(dataset.target),
        dataset.digest,
        len(split.y_train),
        len(split.y_test),
    )
    if feedback is not None:
        overlap = _test_rows_in_feedback(split, feedback)
        split = add_feedback(split, feedback)
        log.info(
            "feedback: %d labelled production row(s) from %s join the training split "
            "(%d rows now); the %d test rows stay the data set's own",
            len(feedback),
            feedback.source,
            len(split.y_train),
            len(split.y_test),
        )
        if overlap:
            log.warning(
                "feedback: %d row(s) repeat held-out test rows exactly; with their labels in "
                "training, the test metrics of this session's candidates are optimistic",
                overlap,
            )
    if mlflow.get_tracking_uri() != settings.tracking_uri:
        raise RuntimeError(
            f"MLflow's tracking URI is {mlflow.get_tracking_uri()!r}, not the session's "
            f"{settings.tracking_uri!r}: call settings.use_tracking_uri() first"
        )
    wait_for_tracking_server(settings)
    client = MlflowClient()
    experiment = experiment_id(client, settings.experiment_name)
    session_name = f"training-session-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    estimators = build_candidates(settings.candidates, settings.seed)
    source = _source_tags(settings) | trigger_tags(settings, triggered_by)
    feedback_metric = {} if feedback is None else {FEEDBACK_ROWS_METRIC: float(len(feedback))}

    with (
        tempfile.TemporaryDirectory() as tmp,
        tracked_run(experiment_id=experiment, run_name=session_name) as parent,
    ):
        workdir = Path(tmp)
        wine = _mlflow_dataset(dataset)
        try:
            mlflow.set_tags({"session": "training", "dataset_digest": dataset.digest} | source)
            _log_dataset(dataset, wine, settings, workdir)
            if feedback is not None:
                _log_feedback(feedback)
            results = _train_candidates(
                estimators,
                dataset,
                wine,
                split,
                settings,
                workdir,
                experiment,
                source,
                feedback_metric,
            )
        except (MlflowException, requests.RequestException, OSError) as exc:
            raise SessionFailedError(
                f"training failed while logging to MLflow ({_first_line(exc)}); nothing was "
                f"registered and {_unchanged_champion(client, settings)}. "
                "Check that MLflow's artifact store has free space (volume mlflow-artifacts) "
                "and its database is up, then train again"
            ) from exc
        if not results:
            raise SessionFailedError(
                "no candidate passed the ONNX parity check (see the lines above); nothing "
                f"was registered and {_unchanged_champion(client, settings)}"
            )
        best, best_uri = max(results, key=lambda pair: pair[0].rank_key)
        log.info("best candidate of this session: %s", best.name)
        version, decision = _register_and_promote(
            client,
            settings,
            session_name,
            best,
            best_uri,
            split,
            dataset,
            None if feedback is None else len(feedback),
        )
        return SessionResult(
            parent_run_id=parent.info.run_id,
            experiment_id=parent.info.experiment_id,
            version=version,
            decision=decision,
        )


def _source_tags(settings: TrainingSettings) -> dict[str, str]:
    """Where a run comes from: MLflow's own source tags (its UI shows the git commit) and CI's."""
    tags = {
        "mlflow.source.name": SOURCE_NAME,
        "mlflow.source.git.commit": settings.git_commit or _git_commit(),
        "ci_build_id": settings.build_id,
        "ci_build_url": settings.build_url,
    }
    return {k: v for k, v in tags.items() if v}


def _train_candidates(
    estimators: dict[str, Any],
    dataset: Dataset,
    wine: PandasDataset,
    split: Split,
    settings: TrainingSettings,
    workdir: Path,
    experiment: str,
    source: dict[str, str],
    extra_metrics: dict[str, float],
) -> list[tuple[Evaluation, str]]:
    """Evaluates and logs each candidate in its own nested run; returns them with model URIs.

    The nested runs name the experiment too: without it MLflow would start them in its
    active experiment, which this job never sets. Each logs the session's dataset as its
    input (the same entity as the parent's, so one digest). Each is converted to ONNX and
    checked on every row of the dataset (:func:`_convert_candidate`); one that fails is
    logged (without an ONNX file) but left out of the result, so it is never registered.
    """
    results: list[tuple[Evaluation, str]] = []
    for position, (name, estimator) in enumerate(estimators.items(), start=1):
        log.info("[%d/%d] training %s", position, len(estimators), name)
        with tracked_run(experiment_id=experiment, run_name=name, nested=True):
            mlflow.set_tags({"model_family": name, "dataset_digest": dataset.digest} | source)
            _log_input(wine)
            if extra_metrics:
                mlflow.log_metrics(extra_metrics)
            result = evaluate(name, estimator, split, settings.cv_folds, settings.seed)
            check = _convert_candidate(result, dataset, workdir / name)
            uri = _log_candidate(result, split, workdir, check.path)
        m = result.metrics
        log.info(
            "[%d/%d] %s: accuracy=%.4f f1_macro=%.4f log_loss=%.4f cv=%.4f±%.4f "
            "onnx_max_abs_diff=%s",
            position,
            len(estimators),
            name,
            m["accuracy"],
            m["f1_macro"],
            m["log_loss"],
            m["cv_accuracy_mean"],
            m["cv_accuracy_std"],
            f"{check.parity.max_abs_diff:.1e}" if check.parity is not None else "none",
        )
        if check.failure:
            log.warning(
                "[%d/%d] %s is not registered: %s", position, len(estimators), name, check.failure
            )
            continue
        results.append((result, uri))
    return results


def _describe(
    client: MlflowClient, settings: TrainingSettings, version: str, description: str
) -> None:
    """Describes the new version, and the registered model when its description differs.

    Descriptions are for people browsing the registry: a failure to write them is logged,
    and the session (whose version and aliases are in place) still succeeds.
    """
    model = model_description(
        settings.champion_alias, settings.challenger_alias, settings.min_accuracy
    )
    try:
        client.update_model_version(settings.model_name, version, description=description)
        if client.get_registered_model(settings.model_name).description != model:
            client.update_registered_model(settings.model_name, description=model)
    except (MlflowException, requests.RequestException) as exc:
        log.warning("could not write the registry descriptions: %s", _first_line(exc, 160))


def _register_and_promote(
    client: MlflowClient,
    settings: TrainingSettings,
    session_name: str,
    best: Evaluation,
    best_uri: str,
    split: Split,
    dataset: Dataset,
    feedback_rows: int | None = None,
) -> tuple[str, Decision]:
    """Registers the session's best model, then moves ``champion`` only if it earned it.

    Everything from reading the champion to moving the alias happens under the promotion
    lock (:mod:`model_training.promotion_lock`): no other session can move ``champion``
    between the moment this one scores it and the moment this one decides. The champion is
    reloaded by version and scored on this session's test set; a champion it replaces becomes
    ``challenger`` (the runner-up to fall back to). The version is registered with its
    decision and reason as tags, and the alias set, with stop signals held back, so a version
    never exists without them (short of SIGKILL). Once the lock is released, the version and
    the registered model get their descriptions (:func:`_describe`).
    """
    lock = PromotionLock(
        client,
        settings.model_name,
        holder=session_name,
        lease_seconds=settings.lock_lease_seconds,
        wait_seconds=settings.lock_wait_seconds,
    )
    lock.acquire()
    try:
        _give_champion_onnx_twin(client, settings, lock, split, dataset)
        champion_version, champion = _champion_metrics(client, settings, split)
        decision = decide(
            best.metrics, champion, champion_version, min_accuracy=settings.min_accuracy
        )
        alias = settings.champion_alias if decision.promote else settings.challenger_alias
        lock.check()
        with interruption.deferred("registering the new version"):
            registered = mlflow.register_model(
                best_uri,
                settings.model_name,
                tags=version_tags(best.name, alias, decision.reason),
            )
            client.set_registered_model_alias(settings.model_name, alias, registered.version)
            if decision.promote and champion_version is not None:
                # the replaced champion is the runner-up now: the version to fall back to
                client.set_registered_model_alias(
                    settings.model_name, settings.challenger_alias, champion_version
                )
                log.info(
                    "former champion v%s is %s now", champion_version, settings.challenger_alias
                )
            elif decision.promote and version_by_alias(
                client, settings.model_name, settings.challenger_alias
            ):  # no champion before: an older loser is no longer the one to watch
                client.delete_registered_model_alias(settings.model_name, settings.challenger_alias)
            log.info(
                "registered %s version %s as %s: %s",
                settings.model_name,
                registered.version,
                alias,
                decision.reason,
            )
    finally:
        lock.release()
    _describe(
        client,
        settings,
        registered.version,
        version_description(best, alias, decision.reason, dataset, feedback_rows),
    )
    mlflow.set_tags(
        {
            "best_model": best.name,
            "registered_version": registered.version,
            "promotion": alias,
            "promotion_reason": decision.reason,
        }
    )
    mlflow.log_metrics({f"best_{k}": v for k, v in best.metrics.items()})
    if champion is not None:
        mlflow.log_metrics({f"champion_{k}": v for k, v in champion.items()})
    return registered.version, decision
