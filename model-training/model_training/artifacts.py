"""Pictures and tables logged with the runs: confusion matrices, correlations, profiles."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


def dataset_profile(features: pd.DataFrame) -> pd.DataFrame:
    """The per-feature table of the thesis: mean, standard deviation, minimum, maximum.

    Args:
        features: The feature columns.
    """
    return features.agg(["mean", "std", "min", "max"]).T.rename_axis("feature")


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
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


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
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def save_feature_importances(importances: pd.Series, title: str, path: Path) -> Path:
    """Draws feature importances as horizontal bars and saves them as PNG."""
    ordered = importances.sort_values()
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=110)
    ax.barh(ordered.index, ordered.to_numpy(), color="#7b2d43")
    ax.set_xlabel("importance")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
