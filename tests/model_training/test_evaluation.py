"""Model behaviour: candidates are scored honestly and the baseline ranks last."""

import pytest

from model_training.candidates import DEFAULT_CANDIDATES, build_candidates, model_params
from model_training.data import load_dataset
from model_training.evaluation import CANDIDATE_METRICS, evaluate, feature_importances
from model_training.session import split_dataset


@pytest.fixture(scope="module")
def split():
    return split_dataset(load_dataset(), test_size=0.25, seed=42)


def test_split_is_stratified_and_reproducible(split) -> None:
    again = split_dataset(load_dataset(), test_size=0.25, seed=42)
    assert again.x_test.index.equals(split.x_test.index)
    assert len(split.y_test) == 45
    shares = split.y_test.value_counts(normalize=True)
    overall = load_dataset().target.value_counts(normalize=True)
    assert (shares - overall).abs().max() < 0.03


@pytest.mark.parametrize("name", DEFAULT_CANDIDATES)
def test_every_default_candidate_learns_the_wine_classes(name: str, split) -> None:
    result = evaluate(name, build_candidates((name,), 42)[name], split, cv_folds=3, seed=42)
    assert set(result.metrics) == set(CANDIDATE_METRICS)
    assert result.metrics["accuracy"] >= 0.9, result.metrics
    assert 0.0 < result.metrics["log_loss"] < 1.0
    assert result.confusion.sum() == len(split.y_test)
    assert "precision" in result.report
    assert model_params(result.model)


def test_baseline_ranks_below_a_real_model(split) -> None:
    models = build_candidates(("DummyClassifier", "LogisticRegression"), 42)
    dummy = evaluate("DummyClassifier", models["DummyClassifier"], split, 3, 42)
    logistic = evaluate("LogisticRegression", models["LogisticRegression"], split, 3, 42)
    assert dummy.rank_key < logistic.rank_key
    assert dummy.metrics["accuracy"] < 0.5


def test_tree_models_report_their_own_feature_importances(split) -> None:
    name = "RandomForestClassifier"
    result = evaluate(name, build_candidates((name,), 42)[name], split, 3, 42)
    assert result.importance_method == "model"
    assert set(result.feature_importances.index) == set(split.x_train.columns)
    assert result.feature_importances["importance"].sum() == pytest.approx(1.0)


@pytest.mark.parametrize("name", ["KNeighborsClassifier", "SVC", "LogisticRegression"])
def test_other_models_get_permutation_importance_reproducibly(name: str, split) -> None:
    model = build_candidates((name,), 42)[name]
    result = evaluate(name, model, split, 3, 42)
    assert result.importance_method == "permutation"
    importances = result.feature_importances
    assert set(importances.index) == set(split.x_test.columns)
    assert list(importances.columns) == ["importance", "std"]
    assert importances["importance"].is_monotonic_decreasing
    assert importances["importance"].max() > 0  # some feature matters on the test set
    again, _ = feature_importances(result.model, split, 42)
    assert again.equals(importances)


def test_test_probabilities_are_kept_for_the_curves(split) -> None:
    name = "LogisticRegression"
    result = evaluate(name, build_candidates((name,), 42)[name], split, 3, 42)
    assert result.probabilities.shape == (len(split.y_test), 3)
    assert result.probabilities.sum(axis=1) == pytest.approx(1.0)
