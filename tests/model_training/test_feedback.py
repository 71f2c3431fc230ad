"""Training with feedback: labelled production rows, validated, join the training split only."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from devstack import free_port
from model_training.data import (
    FeedbackUnavailableError,
    feedback_from_rows,
    load_dataset,
    read_feedback,
)
from model_training.session import add_feedback, split_dataset, trigger_tags
from model_training.settings import TrainingSettings
from tests.support.prediction_log import fill_log
from wine_mlops.features import FEATURE_NAMES

WINE = [float(v) for v in load_dataset().features.iloc[0]]


def test_valid_rows_are_kept_and_invalid_ones_left_out_with_the_reason() -> None:
    rows: list[tuple[list[float], int]] = [
        (WINE, 0),
        (WINE[:12], 1),  # a value missing
        ([*WINE[:3], float("nan"), *WINE[4:]], 1),
        ([*WINE[:5], float("inf"), *WINE[6:]], 2),
        (WINE, 5),  # no such class
        (WINE, 2),
    ]
    feedback = feedback_from_rows(rows, "sqlite:///log.db")
    assert len(feedback) == 2
    assert list(feedback.target) == [0, 2]
    assert list(feedback.features.columns) == list(FEATURE_NAMES)
    assert feedback.features.iloc[1].tolist() == WINE
    assert feedback.rejected_count == 4
    assert feedback.rejected == (
        "row 2: 13 feature values expected",
        f"row 3: {FEATURE_NAMES[3]} is not finite",
        f"row 4: {FEATURE_NAMES[5]} is not finite",
        "row 5: unknown class 5; expected one of 0, 1, 2",
    )


def test_feedback_joins_the_training_split_and_leaves_the_test_split_as_it_was() -> None:
    dataset = load_dataset()
    plain = split_dataset(dataset, 0.25, 42)
    feedback = feedback_from_rows([(WINE, 2)] * 30, "log")
    split = add_feedback(plain, feedback)
    pd.testing.assert_frame_equal(split.x_test, plain.x_test)
    pd.testing.assert_series_equal(split.y_test, plain.y_test)
    assert len(split.x_train) == len(plain.x_train) + 30
    assert list(split.y_train[-30:]) == [2] * 30
    assert split.x_train.iloc[-1].tolist() == WINE
    assert split.x_train.iloc[: len(plain.x_train)].to_numpy().tolist() == (
        plain.x_train.to_numpy().tolist()
    )


def test_runs_name_what_started_them() -> None:
    manual = TrainingSettings()
    ci = TrainingSettings.model_validate({"BUILD_ID": "17"})
    assert trigger_tags(manual, "WineFeatureDrift") == {
        "wine.trigger": "alert",
        "wine.trigger.alert": "WineFeatureDrift",
    }
    assert trigger_tags(manual, None) == {"wine.trigger": "manual"}
    assert trigger_tags(ci, None) == {"wine.trigger": "ci"}


def test_labelled_rows_are_read_from_the_prediction_log(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    fill_log(url, [(WINE, 1), (WINE, 2), (WINE, 0)])
    feedback = read_feedback(url, None, limit=10)
    assert sorted(feedback.target) == [0, 1, 2]
    assert feedback.source == url
    assert len(read_feedback(url, None, limit=2)) == 2


def test_an_unreachable_prediction_log_is_reported_without_its_password(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret-password\n")
    url = f"postgresql+psycopg2://monitoring_reader@127.0.0.1:{free_port()}/monitoring"
    with pytest.raises(FeedbackUnavailableError) as caught:
        read_feedback(url, secret, limit=10)
    assert caught.value.cause == "unreachable"
    assert "cannot be reached" in str(caught.value)
    assert "s3cret-password" not in str(caught.value)


def test_an_unreadable_password_file_is_a_settings_problem(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    with pytest.raises(FeedbackUnavailableError) as caught:
        read_feedback(url, tmp_path / "missing", limit=10)
    assert caught.value.cause == "settings"
    assert "password file cannot be read" in str(caught.value)
