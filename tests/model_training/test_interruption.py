"""Stop signals: raised at once, held back inside a deferred block, raised once only."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from model_training import interruption
from model_training.interruption import TrainingInterrupted


@pytest.fixture(autouse=True)
def _handlers() -> Iterator[None]:
    """Installs the training's handlers for one test, then puts pytest's back."""
    saved = {signum: signal.getsignal(signum) for signum in interruption.STOP_SIGNALS}
    interruption.install()
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def test_sigterm_stops_the_session_with_exit_code_143() -> None:
    with pytest.raises(TrainingInterrupted) as stopped:
        os.kill(os.getpid(), signal.SIGTERM)
    assert stopped.value.exit_code == 143
    assert str(stopped.value) == "stopped by SIGTERM"


def test_sigint_gives_130() -> None:
    with pytest.raises(TrainingInterrupted) as stopped:
        os.kill(os.getpid(), signal.SIGINT)
    assert stopped.value.exit_code == 130


def _register(done: list[str]) -> None:
    with interruption.deferred("registering the new version"):
        os.kill(os.getpid(), signal.SIGTERM)
        done.append("alias set")
        with interruption.deferred("an inner step"):
            done.append("tags set")
        done.append("after the inner block")  # only the outermost block raises
    done.append("after the block")


def test_a_deferred_block_completes_before_the_signal_is_raised() -> None:
    done: list[str] = []
    with pytest.raises(TrainingInterrupted):
        _register(done)
    assert done == ["alias set", "tags set", "after the inner block"]


def test_a_second_signal_is_ignored_while_stopping() -> None:
    with pytest.raises(TrainingInterrupted):
        os.kill(os.getpid(), signal.SIGTERM)
    os.kill(os.getpid(), signal.SIGTERM)  # cleanup goes on: no second exception
    with interruption.deferred("finishing a run"):
        pass
    assert interruption.pending() is None
