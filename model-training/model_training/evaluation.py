"""Scoring candidates: test-set metrics, cross-validation, timings."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
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
    feature_importances: pd.Series | None = None

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


def evaluate(name: str, estimator: Any, split: Split, cv_folds: int, seed: int) -> Evaluation:
    """Cross-validates a candidate on the training part, fits it and scores it on the test part.

    Args:
        name: The model family, used as the run name.
        estimator: An unfitted estimator.
        split: The train/test split.
        cv_folds: Number of stratified folds for cross-validation.
        seed: Random state for the fold shuffling.

    Returns:
        The fitted model with its metrics, confusion matrix and classification report.
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
    metrics = _scores(split.y_test, predicted, model.predict_proba(split.x_test))
    metrics["cv_accuracy_mean"] = float(cv_scores.mean())
    metrics["cv_accuracy_std"] = float(cv_scores.std())
    metrics["fit_time_seconds"] = fit_seconds
    metrics["predict_time_per_row_seconds"] = _prediction_seconds_per_row(model, split.x_test)

    inner = model.steps[-1][1] if hasattr(model, "steps") else model
    importances = getattr(inner, "feature_importances_", None)
    return Evaluation(
        name=name,
        model=model,
        metrics=metrics,
        predictions=predicted,
        confusion=confusion_matrix(split.y_test, predicted, labels=list(CLASS_IDS)),
        report=classification_report(
            split.y_test, predicted, labels=list(CLASS_IDS), zero_division=0
        ),
        feature_importances=(
            pd.Series(importances, index=split.x_train.columns).sort_values(ascending=False)
            if importances is not None
            else None
        ),
    )
