"""The background refresher: reads MLflow every N seconds and swaps in the new state."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from mlflow_exporter.snapshot import Snapshot

log = logging.getLogger(__name__)


class SnapshotSource(Protocol):
    """Anything that can read a snapshot, e.g. :class:`~mlflow_exporter.source.MlflowSource`."""

    def read(self) -> Snapshot:
        """Reads the current facts; raises when they cannot be read."""
        ...


@dataclass(frozen=True)
class ExporterState:
    """What the collectors render: the last good snapshot and how refreshing went.

    Attributes:
        snapshot: The last snapshot read successfully, or None before the first success.
        up: Whether the last refresh reached MLflow.
        last_success: Unix time of the last successful refresh, or None.
        last_duration: Seconds the last refresh took (successful or not), or None.
        refreshes: Refreshes attempted so far.
        errors: Refreshes that failed so far.
        last_error: The last failure's message, or None.
    """

    snapshot: Snapshot | None = None
    up: bool = False
    last_success: float | None = None
    last_duration: float | None = None
    refreshes: int = 0
    errors: int = 0
    last_error: str | None = None


class Refresher:
    """Keeps an :class:`ExporterState` up to date from a source, in a daemon thread.

    The state is replaced as a whole (one attribute assignment), never changed in place, so
    a scrape reading :attr:`state` always sees one consistent refresh.

    Args:
        source: Where snapshots come from.
        interval: Seconds between the start of two refreshes.
        clock: The wall clock (Unix seconds); tests may pass another.
        min_pause: Seconds always left between the end of a refresh and the start of the
            next, so a refresh that overruns the interval cannot chain into back-to-back
            reads of MLflow.
    """

    def __init__(
        self,
        source: SnapshotSource,
        interval: float,
        clock: Callable[[], float] = time.time,
        min_pause: float = 0.0,
    ) -> None:
        self._source = source
        self._interval = interval
        self._min_pause = min_pause
        self._clock = clock
        self._state = ExporterState()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def state(self) -> ExporterState:
        """The current state (an immutable value)."""
        return self._state

    @property
    def alive(self) -> bool:
        """Whether the background thread runs."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def died(self) -> bool:
        """Whether the background thread was started and is no longer running."""
        return self._thread is not None and not self._thread.is_alive() and not self._stop.is_set()

    def refresh_once(self) -> ExporterState:
        """Reads the source once and publishes the new state; never raises.

        Returns:
            The new state.
        """
        started = time.perf_counter()
        old = self._state
        try:
            snapshot = self._source.read()
        except Exception as exc:  # any failure must leave the last snapshot in place
            message = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
            if old.up or old.refreshes == 0:
                log.warning("MLflow refresh failed, serving the last snapshot: %s", message)
            else:
                log.debug("MLflow refresh failed again: %s", message)
            new = replace(
                old,
                up=False,
                last_duration=time.perf_counter() - started,
                refreshes=old.refreshes + 1,
                errors=old.errors + 1,
                last_error=message,
            )
        else:
            duration = time.perf_counter() - started
            if not old.up and old.refreshes > 0:
                log.info("MLflow reachable again after %d failed refresh(es)", old.errors)
            log.debug(
                "refreshed in %.3f s: %d runs, %d requests",
                duration,
                snapshot.runs_read,
                snapshot.requests,
            )
            new = replace(
                old,
                snapshot=snapshot,
                up=True,
                last_success=self._clock(),
                last_duration=duration,
                refreshes=old.refreshes + 1,
            )
        self._state = new
        return new

    def pause_after(self, duration: float) -> float:
        """Seconds to wait after a refresh that took ``duration`` seconds.

        The rest of the interval, but never less than the minimum pause.
        """
        return max(self._min_pause, self._interval - duration)

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.refresh_once()
            duration = time.monotonic() - started
            if duration > self._interval:
                log.warning(
                    "refresh took %.1f s, longer than the %.1f s interval; next in %.1f s",
                    duration,
                    self._interval,
                    self.pause_after(duration),
                )
            self._stop.wait(self.pause_after(duration))

    def start(self) -> None:
        """Starts the background thread (its first refresh happens at once)."""
        if self.alive:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="mlflow-refresher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stops the background thread after its current refresh."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
