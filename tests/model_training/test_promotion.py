"""The promotion rule: promote when at least as good, never demote a better champion."""

import pytest

from model_training.promotion import decide
from model_training.settings import TrainingSettings
from wine_mlops.settings import DEFAULT_MIN_ACCURACY

NO_FLOOR = 0.0


def metrics(accuracy: float, f1_macro: float = 0.9, log_loss: float = 0.2) -> dict[str, float]:
    return {"accuracy": accuracy, "f1_macro": f1_macro, "log_loss": log_loss}


def test_first_model_becomes_champion() -> None:
    decision = decide(metrics(0.5), None, min_accuracy=NO_FLOOR)
    assert decision.promote
    assert "no champion yet" in decision.reason


def test_better_candidate_is_promoted() -> None:
    assert decide(metrics(0.98), metrics(0.95), "3", min_accuracy=NO_FLOOR).promote


def test_worse_candidate_never_demotes_the_champion() -> None:
    decision = decide(metrics(0.90), metrics(0.97), "3", min_accuracy=NO_FLOOR)
    assert not decision.promote
    assert "champion v3 stays" in decision.reason


def test_equal_candidate_is_promoted() -> None:
    assert decide(metrics(0.97), metrics(0.97), "1", min_accuracy=NO_FLOOR).promote


def test_a_candidate_below_the_accuracy_floor_is_never_promoted() -> None:
    first = decide(metrics(0.80), None, min_accuracy=0.9)
    assert not first.promote
    assert "below the accuracy floor 0.9000" in first.reason
    assert not decide(metrics(0.85), metrics(0.70), "2", min_accuracy=0.9).promote
    assert decide(metrics(0.95), metrics(0.70), "2", min_accuracy=0.9).promote


@pytest.mark.parametrize(
    ("better", "worse"),
    [
        (metrics(0.97, f1_macro=0.96), metrics(0.97, f1_macro=0.95)),
        (metrics(0.97, log_loss=0.1), metrics(0.97, log_loss=0.3)),
    ],
    ids=["macro-f1", "log-loss"],
)
def test_ties_are_broken_by_macro_f1_then_log_loss(
    better: dict[str, float], worse: dict[str, float]
) -> None:
    assert decide(better, worse, min_accuracy=NO_FLOOR).promote
    assert not decide(worse, better, min_accuracy=NO_FLOOR).promote


def test_the_floor_is_the_stack_setting_unless_the_operator_sets_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("WINE_MIN_ACCURACY", raising=False)
    floor = TrainingSettings().min_accuracy
    assert floor == DEFAULT_MIN_ACCURACY == 0.9
    assert not decide(metrics(0.85), None, min_accuracy=floor).promote
    monkeypatch.setenv("WINE_MIN_ACCURACY", "0.8")
    assert decide(metrics(0.85), None, min_accuracy=TrainingSettings().min_accuracy).promote
