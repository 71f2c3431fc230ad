"""``prometheus_client`` collectors that render the last snapshot, never calling MLflow.

Each collector reads the current :class:`~mlflow_exporter.refresher.ExporterState` once per
scrape through a callable (e.g. ``refresher`` ``.state``), so one scrape shows one refresh.
Register them in a private :class:`prometheus_client.CollectorRegistry` (see
:func:`build_registry`), which does not call ``describe()`` (auto-describe is off), so they
have none: only ``collect()``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from mlflow_exporter.refresher import ExporterState
from mlflow_exporter.snapshot import DROP_KINDS
from wine_mlops.settings import DEFAULT_MIN_ACCURACY

StateReader = Callable[[], ExporterState]


class RunCollector(Collector):
    """Runs: the latest finished run of each (experiment, run name) and run counts.

    Exposition (one series per experiment, run name and sanitised metric key; a run name
    that repeats across runs still gives one series, from its latest finished run)::

        # HELP mlflow_run_metric Metric of the latest finished run of each run name.
        # TYPE mlflow_run_metric gauge
        mlflow_run_metric{experiment="wine-classifier",metric="accuracy",run_name="SVC"} 0.97
        # HELP mlflow_run_start_timestamp_seconds Start time of the latest finished run ...
        # TYPE mlflow_run_start_timestamp_seconds gauge
        mlflow_run_start_timestamp_seconds{experiment="wine-classifier",run_name="SVC"} 1.7e+09
        # HELP mlflow_experiment_runs Active runs by status among the newest runs read ...
        # TYPE mlflow_experiment_runs gauge
        mlflow_experiment_runs{experiment="wine-classifier",status="FINISHED"} 12.0

    The runs are the newest of each experiment (``EXPORTER_RUNS_PER_EXPERIMENT``): the counts
    are the experiment's counts while it holds fewer runs, else the status mix of its newest
    runs (``mlflow_exporter_run_cap_reached`` is then 1).

    Args:
        state: Returns the current exporter state.
    """

    def __init__(self, state: StateReader) -> None:
        self._state = state

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                "mlflow_run_metric",
                "Metric of the latest finished run of each run name (model family), "
                "by experiment; metric keys sanitised to [a-zA-Z0-9_].",
                labels=["experiment", "run_name", "metric"],
            ),
            GaugeMetricFamily(
                "mlflow_run_start_timestamp_seconds",
                "Start time of the latest finished run of each run name, by experiment.",
                labels=["experiment", "run_name"],
            ),
            GaugeMetricFamily(
                "mlflow_experiment_runs",
                "Active (not deleted) runs by status among the newest runs the exporter reads "
                "of an experiment (all of them up to EXPORTER_RUNS_PER_EXPERIMENT).",
                labels=["experiment", "status"],
            ),
        )

    def collect(self) -> Iterator[Metric]:
        """The families with one sample per series of the current snapshot."""
        snapshot = self._state().snapshot
        if snapshot is None:
            return
        metrics, starts, counts = self._families()
        for experiment in snapshot.experiments:
            for status, count in experiment.runs_by_status:
                counts.add_metric([experiment.name, status], count)
            for run in experiment.latest_runs:
                if run.start_time_seconds is not None:
                    starts.add_metric([experiment.name, run.run_name], run.start_time_seconds)
                for key, value in run.metrics:
                    metrics.add_metric([experiment.name, run.run_name, key], value)
        yield from (metrics, starts, counts)


class RegistryCollector(Collector):
    """The model registry: aliases, the metrics of the runs behind them, version counts.

    Exposition::

        # HELP mlflow_model_alias_info The version and run an alias of a registered model ...
        # TYPE mlflow_model_alias_info gauge
        mlflow_model_alias_info{alias="champion",model="wine",run_id="3f2a",version="4"} 1.0
        # HELP mlflow_model_alias_version The version number an alias points to.
        # TYPE mlflow_model_alias_version gauge
        mlflow_model_alias_version{alias="champion",model="wine-classifier"} 4.0
        # HELP mlflow_model_alias_metric Metric of the run behind the version an alias ...
        # TYPE mlflow_model_alias_metric gauge
        mlflow_model_alias_metric{alias="champion",metric="accuracy",model="wine-classifier"} 0.98
        # HELP mlflow_model_versions Versions of a registered model.
        # TYPE mlflow_model_versions gauge
        mlflow_model_versions{model="wine-classifier"} 6.0

    Args:
        state: Returns the current exporter state.
    """

    def __init__(self, state: StateReader) -> None:
        self._state = state

    def _families(self) -> tuple[GaugeMetricFamily, ...]:
        return (
            GaugeMetricFamily(
                "mlflow_model_alias_info",
                "The version and run an alias of a registered model points to (always 1).",
                labels=["model", "alias", "version", "run_id"],
            ),
            GaugeMetricFamily(
                "mlflow_model_alias_version",
                "The version number an alias of a registered model points to.",
                labels=["model", "alias"],
            ),
            GaugeMetricFamily(
                "mlflow_model_alias_metric",
                "Metric of the run behind the version an alias points to (e.g. the champion's).",
                labels=["model", "alias", "metric"],
            ),
            GaugeMetricFamily(
                "mlflow_model_versions",
                "Versions registered for a registered model (the newest version's number).",
                labels=["model"],
            ),
        )

    def collect(self) -> Iterator[Metric]:
        """The families with one sample per model and alias of the current snapshot."""
        snapshot = self._state().snapshot
        if snapshot is None:
            return
        info, number, metrics, versions = self._families()
        for model in snapshot.models:
            versions.add_metric([model.name], model.versions)
            for alias in model.aliases:
                info.add_metric([model.name, alias.alias, alias.version, alias.run_id], 1)
                if alias.version.isdigit():
                    number.add_metric([model.name, alias.alias], int(alias.version))
                for key, value in alias.metrics:
                    metrics.add_metric([model.name, alias.alias, key], value)
        yield from (info, number, metrics, versions)


#: The exporter's own metrics: name -> (type, help).
_EXPORTER_METRICS: dict[str, tuple[str, str]] = {
    "mlflow_up": ("gauge", "Whether the last refresh reached MLflow (1) or not (0)."),
    "mlflow_exporter_last_refresh_success_timestamp_seconds": (
        "gauge",
        "Unix time of the last successful refresh from MLflow (0 before the first).",
    ),
    "mlflow_exporter_snapshot_age_seconds": (
        "gauge",
        "Seconds since the snapshot served was read from MLflow.",
    ),
    "mlflow_exporter_refresh_duration_seconds": (
        "gauge",
        "Seconds the last refresh took, successful or not.",
    ),
    "mlflow_exporter_refreshes": ("counter", "Refreshes from MLflow attempted."),
    "mlflow_exporter_refresh_errors": (
        "counter",
        "Refreshes from MLflow that failed (the last snapshot stayed in place).",
    ),
    "mlflow_exporter_refresh_requests": (
        "gauge",
        "MLflow REST requests made by the last successful refresh.",
    ),
    "mlflow_exporter_runs_read": ("gauge", "Runs read from MLflow by the last successful refresh."),
    "mlflow_exporter_run_window": (
        "gauge",
        "Newest runs the last successful refresh read at most per experiment.",
    ),
    "mlflow_exporter_run_cap_reached": (
        "gauge",
        "1 when the last successful refresh left older runs unread (an experiment held more "
        "runs than the window), else 0.",
    ),
    "mlflow_exporter_dropped_items": (
        "gauge",
        "Items left out of the last snapshot by the cardinality caps, by kind.",
    ),
}


class ExporterCollector(Collector):
    """The exporter itself: reachability of MLflow, freshness and cost of the snapshot.

    Exposition (the age is computed at scrape time, so it grows while MLflow is down)::

        # HELP mlflow_up Whether the last refresh reached MLflow (1) or not (0).
        # TYPE mlflow_up gauge
        mlflow_up 1.0
        # TYPE mlflow_exporter_last_refresh_success_timestamp_seconds gauge
        mlflow_exporter_last_refresh_success_timestamp_seconds 1.7e+09
        # TYPE mlflow_exporter_snapshot_age_seconds gauge
        mlflow_exporter_snapshot_age_seconds 3.2
        # TYPE mlflow_exporter_refresh_duration_seconds gauge
        mlflow_exporter_refresh_duration_seconds 0.045
        # TYPE mlflow_exporter_refreshes counter
        mlflow_exporter_refreshes_total 40.0
        # TYPE mlflow_exporter_refresh_errors counter
        mlflow_exporter_refresh_errors_total 2.0
        # TYPE mlflow_exporter_refresh_requests gauge
        mlflow_exporter_refresh_requests 4.0
        # TYPE mlflow_exporter_runs_read gauge
        mlflow_exporter_runs_read 200.0
        # TYPE mlflow_exporter_run_window gauge
        mlflow_exporter_run_window 200.0
        # TYPE mlflow_exporter_run_cap_reached gauge
        mlflow_exporter_run_cap_reached 1.0
        # TYPE mlflow_exporter_dropped_items gauge
        mlflow_exporter_dropped_items{kind="run_names"} 0.0

    (HELP lines shortened here.) The success timestamp is 0 and the snapshot age is absent
    until the first successful refresh.
    """

    def __init__(self, state: StateReader, clock: Callable[[], float] = time.time) -> None:
        self._state = state
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        """The families for the current state, the snapshot age computed now."""
        state = self._state()
        snapshot = state.snapshot
        values: dict[str, float | None] = {
            "mlflow_up": float(state.up),
            "mlflow_exporter_last_refresh_success_timestamp_seconds": state.last_success or 0.0,
            "mlflow_exporter_snapshot_age_seconds": (
                None if state.last_success is None else max(0.0, self._clock() - state.last_success)
            ),
            "mlflow_exporter_refresh_duration_seconds": (
                math.nan if state.last_duration is None else state.last_duration
            ),
            "mlflow_exporter_refreshes": state.refreshes,
            "mlflow_exporter_refresh_errors": state.errors,
            "mlflow_exporter_refresh_requests": snapshot.requests if snapshot else 0,
            "mlflow_exporter_runs_read": snapshot.runs_read if snapshot else 0,
            "mlflow_exporter_run_window": snapshot.run_window if snapshot else 0,
            "mlflow_exporter_run_cap_reached": float(snapshot.run_cap_reached) if snapshot else 0,
        }
        for name, value in values.items():
            if value is None:
                continue
            kind, doc = _EXPORTER_METRICS[name]
            if kind == "counter":
                yield CounterMetricFamily(name, doc, value=value)
            else:
                yield GaugeMetricFamily(name, doc, value=value)
        dropped = GaugeMetricFamily(
            "mlflow_exporter_dropped_items",
            _EXPORTER_METRICS["mlflow_exporter_dropped_items"][1],
            labels=["kind"],
        )
        counts = dict(snapshot.dropped) if snapshot else {}
        for kind in DROP_KINDS:
            dropped.add_metric([kind], counts.get(kind, 0))
        yield dropped


class FloorCollector(Collector):
    """The stack's accuracy floor, which the alert on the champion's accuracy compares with.

    Exposition::

        # HELP wine_champion_accuracy_floor Lowest test accuracy a champion may have ...
        # TYPE wine_champion_accuracy_floor gauge
        wine_champion_accuracy_floor 0.9
    """

    def __init__(self, floor: float) -> None:
        self._floor = floor

    def collect(self) -> Iterator[Metric]:
        """One gauge: the floor from the settings (``WINE_MIN_ACCURACY``)."""
        yield GaugeMetricFamily(
            "wine_champion_accuracy_floor",
            "Lowest test accuracy a champion may have (WINE_MIN_ACCURACY, which training "
            "promotes by).",
            value=self._floor,
        )


class Exposition:
    """Renders ``/metrics``: the snapshot's metrics once per snapshot, the live ones each time.

    The run and registry metrics only change when a refresh swaps in a new snapshot, so
    their text is rendered once per snapshot and format and reused by every scrape; only
    the exporter's own metrics (the snapshot age grows) and the process metrics are rendered
    per scrape. A scrape then costs little CPU even while a refresh parses MLflow's answers.

    Args:
        state: Returns the current exporter state.
        clock: The wall clock used for the snapshot age.
        accuracy_floor: The stack's accuracy floor (``settings.min_accuracy``).
    """

    def __init__(
        self,
        state: StateReader,
        clock: Callable[[], float] = time.time,
        accuracy_floor: float = DEFAULT_MIN_ACCURACY,
    ) -> None:
        self._state = state
        self._snapshot_metrics = CollectorRegistry()
        self._snapshot_metrics.register(RunCollector(lambda: self._rendering))
        self._snapshot_metrics.register(RegistryCollector(lambda: self._rendering))
        self._snapshot_metrics.register(FloorCollector(accuracy_floor))
        self._live_metrics = CollectorRegistry()
        ProcessCollector(registry=self._live_metrics)
        self._live_metrics.register(ExporterCollector(state, clock))
        self._rendering = ExporterState()
        self._cache: dict[str, tuple[object, bytes]] = {}
        self._lock = threading.Lock()

    def render(self, accept: str) -> tuple[bytes, str]:
        """The exposition for a request's ``Accept`` header.

        Returns:
            The body and its content type (Prometheus text, or OpenMetrics when asked).
        """
        encoder, content_type = choose_encoder(accept)
        state = self._state()
        cached = self._cache.get(content_type)
        if cached is None or cached[0] is not state.snapshot:
            with self._lock:  # one rendering at a time reads self._rendering
                self._rendering = state
                cached = (state.snapshot, encoder(self._snapshot_metrics))
            self._cache[content_type] = cached
        snapshot_part = cached[1]
        if snapshot_part.endswith(_EOF):  # OpenMetrics: one "# EOF", at the very end
            snapshot_part = snapshot_part[: -len(_EOF)]
        return snapshot_part + encoder(self._live_metrics), content_type


_EOF = b"# EOF\n"


def build_registry(
    state: StateReader,
    clock: Callable[[], float] = time.time,
    accuracy_floor: float = DEFAULT_MIN_ACCURACY,
) -> CollectorRegistry:
    """A private registry holding the collectors and the process metrics.

    Args:
        state: Returns the current exporter state.
        clock: The wall clock used for the snapshot age.
        accuracy_floor: The stack's accuracy floor (``settings.min_accuracy``).
    """
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)  # process_* (memory, CPU, open files) of the exporter
    registry.register(RunCollector(state))
    registry.register(RegistryCollector(state))
    registry.register(ExporterCollector(state, clock))
    registry.register(FloorCollector(accuracy_floor))
    return registry
