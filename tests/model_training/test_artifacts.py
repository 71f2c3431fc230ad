"""Plots and descriptions logged with the runs: files that open, texts that say what matters."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from model_training import artifacts
from model_training.data import load_dataset
from model_training.evaluation import Evaluation
from model_training.session import model_description, version_description
from wine_mlops.features import CLASS_IDS, CLASS_NAMES, FEATURE_NAMES

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def scores() -> tuple[np.ndarray, np.ndarray]:
    """Twelve test rows, four per class, with probabilities mostly right."""
    rng = np.random.default_rng(0)
    truth = np.repeat(np.array(CLASS_IDS), 4)
    proba = rng.dirichlet(np.ones(3), size=len(truth))
    proba[np.arange(len(truth)), truth] += 1.0
    return truth, proba / proba.sum(axis=1, keepdims=True)


@pytest.mark.parametrize(
    "save", [artifacts.save_roc_curves, artifacts.save_precision_recall_curves]
)
def test_one_vs_rest_curves_are_saved_as_png(save, scores, tmp_path: Path) -> None:
    truth, proba = scores
    path = save(truth, proba, list(CLASS_IDS), list(CLASS_NAMES), "title", tmp_path / "c.png")
    assert path.read_bytes().startswith(PNG_MAGIC)


def test_permutation_importances_are_drawn_with_error_bars(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {"importance": [0.2, 0.05, 0.0], "std": [0.02, 0.01, 0.0]},
        index=pd.Index(["proline", "hue", "ash"], name="feature"),
    )
    path = artifacts.save_feature_importances(frame, "t", tmp_path / "i.png", xlabel="drop")
    assert path.read_bytes().startswith(PNG_MAGIC)


def test_model_description_names_the_task_and_the_promotion_rule() -> None:
    text = model_description("champion", "challenger", 0.9)
    assert f"{len(FEATURE_NAMES)} chemical features" in text
    assert "one of 3" in text
    assert all(name in text for name in CLASS_NAMES)
    assert "`champion`" in text
    assert "`challenger`" in text
    assert "0.90" in text


def test_version_description_gives_family_metrics_and_decision() -> None:
    metrics = {
        "accuracy": 0.9778,
        "f1_macro": 0.9761,
        "log_loss": 0.0712,
        "roc_auc_ovr": 0.999,
        "cv_accuracy_mean": 0.97,
        "cv_accuracy_std": 0.02,
    }
    best = Evaluation(
        name="SVC",
        model=None,
        metrics=metrics,
        predictions=np.zeros(0),
        confusion=np.zeros((3, 3)),
        report="",
        probabilities=np.zeros((0, 3)),
        feature_importances=pd.DataFrame(),
        importance_method="permutation",
    )
    dataset = load_dataset()
    text = version_description(best, "champion", "no champion yet", dataset)
    assert text.startswith(f"SVC, trained on {dataset.source} (digest {dataset.digest})")
    assert "accuracy 0.9778" in text
    assert "macro F1 0.9761" in text
    assert "Registered as `champion`: no champion yet." in text
