"""Live quality and input drift, read from the prediction log off the request path.

A monitor thread of each worker process, every ``WINE_MONITORING_REFRESH_SECONDS``, runs two
small queries on the prediction log (docs/monitoring.md), each bounded by its window:

- the last ``WINE_LIVE_ACCURACY_WINDOW`` labelled predictions (newest feedback first),
  counted by model version: how many, and how many were right;
- the features of the last ``WINE_DRIFT_WINDOW`` logged predictions, whose population
  stability index per feature is measured against the bins the served version was trained
  with (:mod:`wine_mlops.drift`); a version without bins gets no drift figure (and the
  query is not run).

The result is one immutable :class:`QualitySnapshot`, swapped in by one assignment; the
:class:`QualityCollector` on the API's registry yields it on each scrape. Every worker reads
the same shared database, so whichever worker answers a scrape (prometheus_client's
multiprocess mode) gives the same figures, up to one refresh apart. Nothing is exported
before the first successful refresh; a failed refresh (database down, slow, refusing) keeps
the last snapshot (its timestamp tells its age), is counted in
``wine_api_monitoring_refresh_failures_total`` and logged at most once every
:data:`FAILURE_REPORT_SECONDS`. No request ever waits for any of this.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import numpy as np
import sqlalchemy as sa
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.engine import Connection, Engine

from prediction_api.metrics import ApiMetrics
from prediction_api.serving import ServedModel
from prediction_api.settings import ApiSettings
from wine_mlops.drift import DriftReference
from wine_mlops.features import FEATURE_NAMES
from wine_mlops.monitoring_db import feedback, predictions
from wine_mlops.training_ranges import TrainingRanges

log = logging.getLogger(__name__)

#: Failures are logged at most this often (seconds); the first one at once.
FAILURE_REPORT_SECONDS: Final = 300.0
#: Seconds the app's shutdown waits for a refresh in progress.
STOP_SECONDS: Final = 10.0


class ServedModelHolder(Protocol):
    """What the monitor needs of the model store: the model serving now."""

    @property
    def current(self) -> ServedModel | None:
        """The model serving right now, or None."""


class EngineHolder(Protocol):
    """What holds the worker's engine on the prediction log (the prediction log itself)."""

    @property
    def engine(self) -> Engine | None:
        """The engine, or None while there is none."""


@dataclass(frozen=True)
class LiveAccuracy:
    """The labelled predictions of one model version in the accuracy window.

    Attributes:
        labelled: How many of them.
        correct: How many were predicted right.
    """

    labelled: int
    correct: int

    @property
    def accuracy(self) -> float:
        """The share predicted right."""
        return self.correct / self.labelled


@dataclass(frozen=True)
class QualitySnapshot:
    """What one refresh read. Immutable once built.

    Attributes:
        refreshed_at: Unix time the refresh started: the figures include every row
            written before it.
        accuracy: By model version, the labelled predictions of the accuracy window.
        drift: The PSI of each feature (:data:`FEATURE_NAMES` order), or None when the
            served version has no bins or the window holds no rows.
        drift_rows: The rows the drift was measured on, or None when it was not measured
            (no model served, or one without bins).
        drift_version: The served version whose bins the drift was measured against.
    """

    refreshed_at: float
    accuracy: dict[str, LiveAccuracy] = field(default_factory=dict)
    drift: tuple[float, ...] | None = None
    drift_rows: int | None = None
    drift_version: str | None = None


def accuracy_query(window: int) -> sa.Select[Any]:
    """The last ``window`` labelled predictions (by ``received_at``), counted by version:
    ``(model_version, labelled, correct)`` rows."""
    correct = sa.case((predictions.c.class_id == feedback.c.true_class_id, 1), else_=0)
    latest = (
        sa.select(predictions.c.model_version, correct.label("correct"))
        .select_from(feedback.join(predictions, predictions.c.id == feedback.c.prediction_id))
        .order_by(feedback.c.received_at.desc())
        .limit(window)
        .subquery("latest_labels")
    )
    return sa.select(
        latest.c.model_version,
        sa.func.count().label("labelled"),
        sa.func.sum(latest.c.correct).label("correct"),
    ).group_by(latest.c.model_version)


def drift_query(window: int) -> sa.Select[Any]:
    """The features of the last ``window`` logged predictions (by ``created_at``)."""
    return sa.select(predictions.c.features).order_by(predictions.c.created_at.desc()).limit(window)


def feature_matrix(values: Sequence[Any]) -> np.ndarray:
    """The logged feature lists as an ``(n, 13)`` array; a row that is not 13 finite numbers
    (never written by the API) is left out."""
    try:
        matrix = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        matrix = np.empty((0,))
    width = len(FEATURE_NAMES)
    if matrix.ndim == 2 and matrix.shape[1] == width and np.isfinite(matrix).all():
        return matrix
    good = [
        row
        for row in values
        if isinstance(row, list)
        and len(row) == width
        and all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in row
        )
    ]
    return np.asarray(good, dtype=np.float64).reshape(len(good), width)


class QualityMonitor:
    """Refreshes the live quality and drift snapshot of one worker process.

    Args:
        engine: Gives the prediction log's engine of this worker, or None while it has none
            (a refresh then fails, and is counted).
        store: The model store (the served version's bins come from it).
        metrics: Counts failed refreshes.
        refresh_seconds: Seconds between two refreshes.
        accuracy_window: The last labelled predictions the accuracy rests on.
        drift_window: The last logged inputs the drift is measured on.
    """

    def __init__(
        self,
        engine: Callable[[], Engine | None],
        store: ServedModelHolder,
        metrics: ApiMetrics,
        *,
        refresh_seconds: float = 15.0,
        accuracy_window: int = 200,
        drift_window: int = 500,
    ) -> None:
        self._engine = engine
        self._store = store
        self._metrics = metrics
        self.refresh_seconds = refresh_seconds
        self._accuracy_query = accuracy_query(accuracy_window)
        self._drift_query = drift_query(drift_window)
        self._snapshot: QualitySnapshot | None = None
        self._reference: tuple[TrainingRanges, DriftReference | None] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures = 0  # failed refreshes since the last good one
        self._unreported = 0  # failures not logged yet
        self._last_report = -math.inf

    @property
    def snapshot(self) -> QualitySnapshot | None:
        """The last good refresh's figures, or None before the first one."""
        return self._snapshot

    def _drift_reference(self, served: ServedModel | None) -> DriftReference | None:
        """The served version's bins as arrays (built once per version), or None."""
        if served is None or served.ranges is None:
            return None
        ranges = served.ranges.ranges
        if self._reference is None or self._reference[0] is not ranges:
            bins = ranges.feature_bins()
            self._reference = (ranges, DriftReference.of(bins) if bins is not None else None)
        return self._reference[1]

    def refresh(self) -> bool:
        """Reads the log once and swaps in a new snapshot.

        Never raises: a failure is logged (rate-limited) and counted, and the last snapshot
        stays.

        Returns:
            Whether the refresh succeeded.
        """
        started = time.time()
        try:
            engine = self._engine()
            if engine is None:
                raise RuntimeError("the prediction log has no database connection")
            served = self._store.current
            reference = self._drift_reference(served)
            with engine.connect() as connection:
                snapshot = self._read(connection, started, served, reference)
        except Exception as exc:
            self._failed(exc)
            return False
        self._snapshot = snapshot
        if self._failures:
            log.info("live quality: refreshed again after %d failed refresh(es)", self._failures)
        self._failures = self._unreported = 0
        return True

    def _read(
        self,
        connection: Connection,
        started: float,
        served: ServedModel | None,
        reference: DriftReference | None,
    ) -> QualitySnapshot:
        accuracy = {
            str(version): LiveAccuracy(int(labelled), int(correct or 0))
            for version, labelled, correct in connection.execute(self._accuracy_query)
            if labelled
        }
        if reference is None or served is None:
            return QualitySnapshot(started, accuracy)
        window = feature_matrix(connection.execute(self._drift_query).scalars().all())
        drift = tuple(reference.psi(window).tolist()) if len(window) else None
        return QualitySnapshot(started, accuracy, drift, len(window), served.ref.version)

    def _failed(self, exc: Exception) -> None:
        self._metrics.monitoring_failures.inc()
        self._failures += 1
        self._unreported += 1
        now = time.monotonic()
        if now - self._last_report < FAILURE_REPORT_SECONDS:
            return
        log.warning(
            "live quality: %d refresh(es) failed%s, last: %s: %s; %s",
            self._unreported,
            f" in the last {FAILURE_REPORT_SECONDS:g} s" if self._unreported > 1 else "",
            type(exc).__name__,
            str(exc).splitlines()[0][:300] if str(exc) else "",
            "the figures of the last good refresh stay"
            if self._snapshot is not None
            else "no live figure yet",
        )
        self._last_report = now
        self._unreported = 0

    def start(self) -> None:
        """Starts the monitor thread (its first refresh at once)."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="live-quality", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = STOP_SECONDS) -> None:
        """Stops the monitor thread (waits up to ``timeout`` for a refresh in progress)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(self.refresh_seconds)


class QualityCollector(Collector):
    """Yields the monitor's snapshot on each scrape (nothing before the first refresh)::

        wine_api_live_accuracy{model_version="3"} 0.95
        wine_api_live_labelled{model_version="3"} 200.0
        wine_api_feature_drift{feature="alcohol"} 0.031
        wine_api_drift_window_rows 500.0
        wine_api_monitoring_last_refresh_timestamp_seconds 1.7e+09

    The drift series are there only when the served version carries bins;
    ``wine_api_feature_drift`` only once the window holds a row.

    Args:
        monitor: The monitor whose snapshot is exported.
    """

    def __init__(self, monitor: QualityMonitor) -> None:
        self._monitor = monitor

    def collect(self) -> Iterator[Metric]:
        """The gauges of the last good refresh."""
        snapshot = self._monitor.snapshot
        if snapshot is None:
            return
        if snapshot.accuracy:
            accuracy = GaugeMetricFamily(
                "wine_api_live_accuracy",
                "Share of the last labelled predictions (WINE_LIVE_ACCURACY_WINDOW, by time of "
                "feedback) that were right, by the model version that made them",
                labels=("model_version",),
            )
            labelled = GaugeMetricFamily(
                "wine_api_live_labelled",
                "How many labelled predictions wine_api_live_accuracy rests on, by model version",
                labels=("model_version",),
            )
            for version, figures in sorted(snapshot.accuracy.items()):
                accuracy.add_metric((version,), figures.accuracy)
                labelled.add_metric((version,), figures.labelled)
            yield accuracy
            yield labelled
        if snapshot.drift is not None:
            drift = GaugeMetricFamily(
                "wine_api_feature_drift",
                "Population stability index of each feature over the last logged inputs "
                "(WINE_DRIFT_WINDOW) against the served version's training bins "
                "(< 0.1 stable, 0.1-0.25 moderate shift, > 0.25 major shift)",
                labels=("feature",),
            )
            for name, value in zip(FEATURE_NAMES, snapshot.drift, strict=True):
                drift.add_metric((name,), value)
            yield drift
        if snapshot.drift_rows is not None:
            yield GaugeMetricFamily(
                "wine_api_drift_window_rows",
                "Logged inputs wine_api_feature_drift was measured on",
                value=snapshot.drift_rows,
            )
        yield GaugeMetricFamily(
            "wine_api_monitoring_last_refresh_timestamp_seconds",
            "Unix time the last successful refresh of these figures started reading the "
            "prediction log",
            value=snapshot.refreshed_at,
        )


def build_quality_monitor(
    settings: ApiSettings, log_engine: EngineHolder, store: ServedModelHolder, metrics: ApiMetrics
) -> QualityMonitor:
    """The monitor of an app whose prediction log is on, its collector registered on the
    app's registry (start and stop it with the app's lifespan).

    Args:
        settings: The windows and the refresh interval.
        log_engine: The prediction log, whose engine the monitor reads through.
        store: The model store.
        metrics: The app's metrics.
    """
    monitor = QualityMonitor(
        lambda: log_engine.engine,
        store,
        metrics,
        refresh_seconds=settings.monitoring_refresh_seconds,
        accuracy_window=settings.live_accuracy_window,
        drift_window=settings.drift_window,
    )
    metrics.registry.register(QualityCollector(monitor))
    return monitor
