"""Pictures and tables logged with the runs: confusion matrices, curves, correlations, profiles."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def dataset_profile(features: pd.DataFrame) -> pd.DataFrame:
    """The per-feature table of the thesis: mean, standard deviation, minimum, maximum.

    Args:
        features: The feature columns.
    """
    return features.agg(["mean", "std", "min", "max"]).T.rename_axis("feature")


def _save(fig: Figure, path: Path) -> Path:
    """Saves a figure as PNG and frees it."""
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _label_unit_square(
    ax: Axes, xlabel: str, ylabel: str, title: str, legend: Literal["lower right", "lower left"]
) -> None:
    """Axis labels, title and legend of a curve plotted on the unit square."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.legend(loc=legend, fontsize=8)


def save_confusion_matrix(
    confusion: np.ndarray, class_names: list[str], title: str, path: Path
) -> Path:
    """Draws a confusion matrix with counts in the cells and saves it as PNG."""
    fig, ax = plt.subplots(figsize=(5, 4.2), dpi=110)
    image = ax.imshow(confusion, cmap="Blues")
    ax.set_xticks(range(len(class_names)), class_names, rotation=20)
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    threshold = confusion.max() / 2 if confusion.size else 0
    for (row, col), value in np.ndenumerate(confusion):
        color = "white" if value > threshold else "black"
        ax.text(col, row, str(value), ha="center", va="center", color=color)
    fig.colorbar(image, ax=ax, fraction=0.046)
    return _save(fig, path)


def _one_vs_rest(
    y_true: np.ndarray, probabilities: np.ndarray, class_ids: list[int]
) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """Per class: its column index, the binary truth (this class or not) and its scores."""
    truth = np.asarray(y_true)
    return [(i, (truth == cid).astype(int), probabilities[:, i]) for i, cid in enumerate(class_ids)]


def save_roc_curves(
    y_true: np.ndarray,
    probabilities: np.ndarray,
    class_ids: list[int],
    class_names: list[str],
    title: str,
    path: Path,
) -> Path:
    """Draws one-vs-rest ROC curves (one per class, with its AUC) and saves them as PNG.

    Args:
        y_true: True class ids of the test set.
        probabilities: ``predict_proba`` of the test set, one column per class id.
        class_ids: The class ids in column order.
        class_names: Their display names.
        title: The plot title.
        path: Where to save the PNG.
    """
    fig, ax = plt.subplots(figsize=(5.5, 4.5), dpi=110)
    for i, truth, scores in _one_vs_rest(y_true, probabilities, class_ids):
        fpr, tpr, _ = roc_curve(truth, scores)
        ax.plot(fpr, tpr, label=f"{class_names[i]} (AUC {auc(fpr, tpr):.3f})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8, label="chance")
    _label_unit_square(ax, "false positive rate", "true positive rate", title, "lower right")
    return _save(fig, path)


def save_precision_recall_curves(
    y_true: np.ndarray,
    probabilities: np.ndarray,
    class_ids: list[int],
    class_names: list[str],
    title: str,
    path: Path,
) -> Path:
    """Draws one-vs-rest precision-recall curves (with average precision) and saves them as PNG.

    Args: as :func:`save_roc_curves`.
    """
    fig, ax = plt.subplots(figsize=(5.5, 4.5), dpi=110)
    for i, truth, scores in _one_vs_rest(y_true, probabilities, class_ids):
        precision, recall, _ = precision_recall_curve(truth, scores)
        average = average_precision_score(truth, scores)
        ax.step(recall, precision, where="post", label=f"{class_names[i]} (AP {average:.3f})")
    _label_unit_square(ax, "recall", "precision", title, "lower left")
    return _save(fig, path)


def save_correlation_heatmap(features: pd.DataFrame, path: Path) -> Path:
    """Draws the Pearson correlation of every feature pair and saves it as PNG."""
    corr = features.corr()
    fig, ax = plt.subplots(figsize=(9, 7.5), dpi=110)
    image = ax.imshow(corr, cmap="coolwarm", vmin=-1, vmax=1)
    ax.set_xticks(range(len(corr)), corr.columns, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(corr)), corr.columns, fontsize=8)
    for (row, col), value in np.ndenumerate(corr.to_numpy()):
        ax.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=6)
    ax.set_title("Feature correlation (Pearson)")
    fig.colorbar(image, ax=ax, fraction=0.046)
    return _save(fig, path)


def save_feature_importances(
    importances: pd.DataFrame, title: str, path: Path, xlabel: str = "importance"
) -> Path:
    """Draws feature importances as horizontal bars (with ``std`` as error bars) as PNG.

    Args:
        importances: Indexed by feature, with ``importance`` and optionally ``std``.
        title: The plot title.
        path: Where to save the PNG.
        xlabel: What the importance measures.
    """
    ordered = importances.sort_values("importance")
    errors = ordered["std"].to_numpy() if "std" in ordered else None
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=110)
    ax.barh(ordered.index, ordered["importance"].to_numpy(), xerr=errors, color="#7b2d43")
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    return _save(fig, path)
