"""Scoring candidates: test-set metrics, cross-validation, timings, feature importances."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.inspection import permutation_importance
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)
from sklearn.model_selection import StratifiedKFold, cross_val_score

from wine_mlops.features import CLASS_IDS

#: The test metrics every candidate's run carries, as :func:`evaluate` computes them.
CANDIDATE_METRICS: tuple[str, ...] = (
    "accuracy", "precision_weighted", "recall_weighted", "f1_weighted", "precision_macro",
    "recall_macro", "f1_macro", "log_loss", "roc_auc_ovr", "cv_accuracy_mean", "cv_accuracy_std",
    "fit_time_seconds", "predict_time_per_row_seconds",
)  # fmt: skip

#: The ONNX parity figures every candidate's run carries besides (logged by the session once
#: the fitted candidate is converted, see :mod:`model_training.onnx_export`): the largest
#: difference between an ONNX probability and scikit-learn's on the whole data set, and the
#: number of rows whose label differs. Not test metrics, so not in :data:`CANDIDATE_METRICS`.
ONNX_DIFF_METRIC = "onnx_max_abs_diff"
ONNX_MISMATCH_METRIC = "onnx_label_mismatches"
ONNX_PARITY_METRICS: tuple[str, ...] = (ONNX_DIFF_METRIC, ONNX_MISMATCH_METRIC)


@dataclass(frozen=True)
class Split:
    """A stratified train/test split of a dataset."""

    x_train: pd.DataFrame
    x_test: pd.DataFrame
    y_train: pd.Series
    y_test: pd.Series


@dataclass
class Evaluation:
    """What a fitted candidate scored, and what it takes to show it."""

    name: str
    model: Any
    metrics: dict[str, float]
    predictions: np.ndarray  # of the test set
    confusion: np.ndarray
    report: str
    probabilities: np.ndarray  # of the test set, one column per class id
    feature_importances: pd.DataFrame  # ``importance`` (and ``std``), largest first
    importance_method: str  # "model" (its own ``feature_importances_``) or "permutation"

    @property
    def rank_key(self) -> tuple[float, float, float]:
        """Ordering of candidates: accuracy, then macro F1, then lower log loss."""
        return rank_key(self.metrics)


def rank_key(metrics: dict[str, float]) -> tuple[float, float, float]:
    """Sort key for a model's test metrics: higher is better.

    Args:
        metrics: Test metrics holding ``accuracy``, ``f1_macro`` and ``log_loss``.
    """
    return (metrics["accuracy"], metrics["f1_macro"], -metrics["log_loss"])


def score_on_test_set(model: Any, x_test: pd.DataFrame, y_test: pd.Series) -> dict[str, float]:
    """Scores a fitted classifier on a test set.

    Args:
        model: A fitted classifier with ``predict`` and ``predict_proba``.
        x_test: Test features.
        y_test: True class ids.

    Returns:
        accuracy, weighted and macro precision/recall/F1, log loss and one-vs-rest ROC AUC.
    """
    return _scores(y_test, model.predict(x_test), model.predict_proba(x_test))


def _scores(y_test: pd.Series, predicted: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    metrics = {"accuracy": float(accuracy_score(y_test, predicted))}
    for average in ("weighted", "macro"):
        kwargs = {"average": average, "zero_division": 0}
        metrics[f"precision_{average}"] = float(precision_score(y_test, predicted, **kwargs))
        metrics[f"recall_{average}"] = float(recall_score(y_test, predicted, **kwargs))
        metrics[f"f1_{average}"] = float(f1_score(y_test, predicted, **kwargs))
    metrics["log_loss"] = float(log_loss(y_test, proba, labels=list(CLASS_IDS)))
    metrics["roc_auc_ovr"] = float(
        roc_auc_score(y_test, proba, multi_class="ovr", labels=list(CLASS_IDS))
    )
    return metrics


def _prediction_seconds_per_row(model: Any, x_test: pd.DataFrame, repeats: int = 20) -> float:
    """Median time of one single-row ``predict`` call, in seconds."""
    row = x_test.iloc[:1]
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict(row)
        timings.append(time.perf_counter() - start)
    return float(np.median(timings))


PERMUTATION_REPEATS = 5
"""Shuffles per feature for permutation importance: 13 features x 5 on the test set is fast."""


def feature_importances(model: Any, split: Split, seed: int) -> tuple[pd.DataFrame, str]:
    """The fitted model's feature importances, or its permutation importance on the test set.

    Tree ensembles carry their own (impurity-based) ``feature_importances_``; every other
    family gets the mean drop of test accuracy when one feature is shuffled
    (:func:`sklearn.inspection.permutation_importance`, fixed seed), so each family has one.

    Returns:
        A frame indexed by feature with ``importance`` (and ``std`` for permutation),
        largest first, and the method: ``"model"`` or ``"permutation"``.
    """
    inner = model.steps[-1][1] if hasattr(model, "steps") else model
    own = getattr(inner, "feature_importances_", None)
    if own is not None:
        frame = pd.DataFrame({"importance": own}, index=split.x_train.columns)
        method = "model"
    else:
        result = permutation_importance(
            model,
            split.x_test,
            split.y_test,
            scoring="accuracy",
            n_repeats=PERMUTATION_REPEATS,
            random_state=seed,
        )
        frame = pd.DataFrame(
            {"importance": result.importances_mean, "std": result.importances_std},
            index=split.x_test.columns,
        )
        method = "permutation"
    frame.index.name = "feature"
    return frame.sort_values("importance", ascending=False), method


def evaluate(name: str, estimator: Any, split: Split, cv_folds: int, seed: int) -> Evaluation:
    """Cross-validates a candidate on the training part, fits it and scores it on the test part.

    Args:
        name: The model family, used as the run name.
        estimator: An unfitted estimator.
        split: The train/test split.
        cv_folds: Number of stratified folds for cross-validation.
        seed: Random state for the fold shuffling.

    Returns:
        The fitted model with its metrics, test probabilities, confusion matrix,
        classification report and feature importances.
    """
    folds = StratifiedKFold(n_splits=cv_folds, shuffle=True, random_state=seed)
    cv_scores = cross_val_score(
        clone(estimator), split.x_train, split.y_train, cv=folds, scoring="accuracy"
    )
    model = clone(estimator)
    start = time.perf_counter()
    model.fit(split.x_train, split.y_train)
    fit_seconds = time.perf_counter() - start

    predicted = model.predict(split.x_test)
    probabilities = model.predict_proba(split.x_test)
    metrics = _scores(split.y_test, predicted, probabilities)
    metrics["cv_accuracy_mean"] = float(cv_scores.mean())
    metrics["cv_accuracy_std"] = float(cv_scores.std())
    metrics["fit_time_seconds"] = fit_seconds
    metrics["predict_time_per_row_seconds"] = _prediction_seconds_per_row(model, split.x_test)

    importances, method = feature_importances(model, split, seed)
    return Evaluation(
        name=name,
        model=model,
        metrics=metrics,
        predictions=predicted,
        confusion=confusion_matrix(split.y_test, predicted, labels=list(CLASS_IDS)),
        report=classification_report(
            split.y_test, predicted, labels=list(CLASS_IDS), zero_division=0
        ),
        probabilities=probabilities,
        feature_importances=importances,
        importance_method=method,
    )
