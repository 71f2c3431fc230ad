"""Training settings from the environment, as compose passes them."""

from typing import Any

import pytest
from pydantic import ValidationError

from model_training.candidates import DEFAULT_CANDIDATES
from model_training.settings import TrainingSettings


def test_blank_variables_mean_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WINE_CANDIDATES", "WINE_DATA_PATH", "GIT_COMMIT", "BUILD_ID", "BUILD_URL"):
        monkeypatch.setenv(name, "")
    settings = TrainingSettings()
    assert settings.candidates == DEFAULT_CANDIDATES
    assert settings.data_path is None
    assert settings.git_commit is None


def test_candidates_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WINE_CANDIDATES", "SVC, DummyClassifier")
    assert TrainingSettings().candidates == ("SVC", "DummyClassifier")


def test_unknown_candidate_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WINE_CANDIDATES", "SVC,Perceptron")
    with pytest.raises(ValidationError, match="Perceptron"):
        TrainingSettings()
    # the command line's --candidates goes through the same check
    unknown: dict[str, Any] = {"WINE_CANDIDATES": "XGBoost"}
    with pytest.raises(ValidationError, match=r"unknown candidate\(s\): XGBoost; known: "):
        TrainingSettings(**unknown)
