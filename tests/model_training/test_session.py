"""A session logs only into the tracking server its entry point made the process's."""

from collections.abc import Callable
from typing import Any

import mlflow
import pytest

from model_training.data import load_dataset
from model_training.session import run_session
from model_training.settings import TrainingSettings


def test_a_session_refuses_a_server_other_than_the_processs(
    mlflow_process_uri: Callable[[str], None],
) -> None:
    mlflow_process_uri("http://127.0.0.1:9")
    server: dict[str, Any] = {"MLFLOW_TRACKING_URI": "http://mlflow-server:5000"}
    settings = TrainingSettings(**server)
    with pytest.raises(RuntimeError, match=r"call settings\.use_tracking_uri\(\) first"):
        run_session(load_dataset(), settings)
    assert mlflow.get_tracking_uri() == "http://127.0.0.1:9"  # nothing global was changed
