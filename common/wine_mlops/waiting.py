"""The one retry/wait loop of the project: call a condition until it holds.

Services use it to wait for a dependency (bounded attempts, doubling pauses, a log line per
retry); tests and the dev runner use it to wait for a process or a state (a deadline, a short
fixed pause).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T | None],
    what: str,
    *,
    timeout: float | None = 30.0,
    attempts: int | None = None,
    interval: float = 0.2,
    max_interval: float | None = None,
    on_retry: Callable[[int, float], None] | None = None,
) -> T:
    """Calls ``condition`` until it returns a truthy value, and returns that value.

    Args:
        condition: Called once per attempt; a falsy result means "not yet". Exceptions it
            raises are not caught: catch the expected ones inside it.
        what: What is waited for, for the error message ("MLflow at http://…").
        timeout: Longest wait in seconds (None: no deadline, ``attempts`` bounds it).
        attempts: Most calls of ``condition`` (None: only the deadline bounds it).
        interval: Pause after the first failed attempt, in seconds.
        max_interval: When set, the pause doubles after every attempt up to this value.
        on_retry: Called with (attempt number, next pause) after each failed attempt that
            will be retried, e.g. to log it.

    Raises:
        ValueError: When neither ``timeout`` nor ``attempts`` bounds the wait.
        TimeoutError: When the condition did not hold in time.
    """
    if timeout is None and attempts is None:
        raise ValueError("wait_until needs a timeout or a number of attempts")
    deadline = None if timeout is None else time.monotonic() + timeout
    pause = interval
    attempt = 0
    while True:
        attempt += 1
        result = condition()
        if result:
            return result
        remaining = None if deadline is None else deadline - time.monotonic()
        if (attempts is not None and attempt >= attempts) or (
            remaining is not None and remaining <= 0
        ):
            spent = f"{attempt} attempt{'s' if attempt > 1 else ''}"
            limit = f" within {timeout:g} s" if remaining is not None and remaining <= 0 else ""
            raise TimeoutError(f"gave up waiting for {what}{limit} ({spent})")
        # The last pause ends at the deadline, so the condition is asked once more then.
        step = pause if remaining is None else min(pause, remaining)
        if on_retry is not None:
            on_retry(attempt, step)
        time.sleep(step)
        if max_interval is not None:
            pause = min(pause * 2, max_interval)
