"""Fixtures of the model behaviour tests: the champion, trained once per module."""

from __future__ import annotations

import pandas as pd
import pytest

from model_training.evaluation import Split
from tests.model.champion import Classifier, TrainedChampion, train_champion


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainedChampion:
    """A real training session's champion (about 15 s: five families, logged and registered)."""
    return train_champion(tmp_path_factory.mktemp("champion"))


@pytest.fixture(scope="module")
def champion(trained: TrainedChampion) -> Classifier:
    """The estimator the prediction API would serve."""
    return trained.model


@pytest.fixture(scope="module")
def split(trained: TrainedChampion) -> Split:
    """The session's train/test split: the champion never saw ``x_test``."""
    return trained.split


@pytest.fixture(scope="module")
def all_features(trained: TrainedChampion) -> pd.DataFrame:
    """Every recorded wine, to read each feature's recorded precision from."""
    return trained.dataset.features
