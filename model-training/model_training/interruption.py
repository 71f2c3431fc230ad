"""Stopping a training session cleanly on SIGTERM (``docker stop``, a CI abort) and SIGINT.

The first signal raises :class:`TrainingInterrupted` in the main thread, so the session can
end its MLflow runs as ``KILLED`` and release the promotion lock on its way out. Further
signals are logged and ignored while it does so (the container's stop grace period still
bounds the wait). Inside a :func:`deferred` block the exception is held back until the block
ends: the short register → alias → tags sequence either completes or never starts.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from types import FrameType

log = logging.getLogger(__name__)

#: The signals that stop a session.
STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)


class TrainingInterrupted(BaseException):  # like KeyboardInterrupt
    """The session was asked to stop by a signal.

    A ``BaseException``, like ``KeyboardInterrupt``, so that ``except Exception`` clauses on the
    way up do not swallow it.

    Args:
        signum: The signal received.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by a signal: 128 + its number."""
        return 128 + self.signum


class _State:
    """What the handler knows: the signal received, whether it was raised, the deferral depth."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forgets any signal received (a new session starts)."""
        self.received: int | None = None
        self.raised = False
        self.steps: list[str] = []  # the deferred blocks the main thread is in


_state = _State()


def _handle(signum: int, frame: FrameType | None) -> None:
    if _state.received is not None:
        log.warning(
            "%s received again: already stopping (ending the runs, releasing the lock)",
            signal.Signals(signum).name,
        )
        return
    _state.received = signum
    if _state.steps:
        log.warning(
            "%s received while %s: stopping once that is complete",
            signal.Signals(signum).name,
            _state.steps[0],
        )
        return
    log.warning("%s received: stopping the training session", signal.Signals(signum).name)
    _raise_pending()


def _raise_pending() -> None:
    if _state.received is not None and not _state.raised:
        _state.raised = True
        raise TrainingInterrupted(_state.received)


def install() -> None:
    """Makes SIGTERM and SIGINT raise :class:`TrainingInterrupted` (main thread only).

    Does nothing outside the main thread (Python delivers signals there only), so sessions
    run in other threads, as in tests, keep the default behaviour.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    _state.reset()
    for signum in STOP_SIGNALS:
        signal.signal(signum, _handle)


@contextlib.contextmanager
def deferred(step: str) -> Iterator[None]:
    """Holds a stop signal back until the block ends, then raises it.

    Use it only around a few short MLflow calls that must happen all or not at all. An
    exception raised inside the block propagates as usual (the pending signal then follows
    at the next block end, or is reported by the caller through :func:`pending`).

    Args:
        step: What the block does, for the log line of a signal held back
            (e.g. ``"registering the new version"``).
    """
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        _state.steps.append(step)
    try:
        yield
    finally:
        if in_main:
            _state.steps.pop()
    if in_main and not _state.steps:
        _raise_pending()


def pending() -> int | None:
    """The stop signal received but not raised yet (e.g. when a deferred block failed)."""
    return None if _state.raised else _state.received
