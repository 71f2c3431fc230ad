"""The one wait loop: returns what the condition found, or says what it waited for."""

import time

import pytest

from wine_mlops.waiting import wait_until


def test_returns_the_first_truthy_answer_of_the_condition() -> None:
    answers = iter([None, 0, "", "ready"])
    assert wait_until(lambda: next(answers), "the service", interval=0) == "ready"


def test_a_deadline_that_passes_names_what_was_awaited() -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"waiting for the champion within 0.3 s"):
        wait_until(lambda: False, "the champion", timeout=0.3, interval=0.05)
    assert time.monotonic() - started < 1.0


def test_the_condition_is_asked_once_more_at_the_deadline() -> None:
    """A state reached just before the deadline counts, however long the pause."""
    ready_at = time.monotonic() + 0.2
    assert wait_until(lambda: time.monotonic() >= ready_at, "the state", timeout=0.3, interval=5)
    assert time.monotonic() < ready_at + 0.5


def test_attempts_bound_the_calls_and_pauses_double_up_to_the_cap() -> None:
    calls: list[int] = []
    pauses: list[float] = []
    with pytest.raises(TimeoutError, match=r"\(4 attempts\)"):
        wait_until(
            lambda: calls.append(1),
            "MLflow",
            timeout=None,
            attempts=4,
            interval=0.001,
            max_interval=0.003,
            on_retry=lambda attempt, pause: pauses.append(pause),
        )
    assert len(calls) == 4
    assert pauses == [0.001, 0.002, 0.003]


def test_an_error_of_the_condition_is_not_swallowed() -> None:
    def broken() -> bool:
        raise RuntimeError("process exited with 1")

    with pytest.raises(RuntimeError, match="exited"):
        wait_until(broken, "the process")


def test_an_unbounded_wait_is_refused() -> None:
    with pytest.raises(ValueError, match="timeout or a number of attempts"):
        wait_until(lambda: True, "anything", timeout=None)
