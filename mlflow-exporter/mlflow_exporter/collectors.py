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
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from mlflow_exporter.refresher import ExporterState
from mlflow_exporter.snapshot import DROP_KINDS
from wine_mlops.settings import DEFAULT_MIN_ACCURACY

StateReader = Callable[[], ExporterState]


#: Unit suffixes of run metric names and how the help text says them.
_UNITS = (("_ratio", "a ratio from 0 to 1"), ("_seconds", "seconds"), ("_bytes", "bytes"))


def _metric_help(subject: str, name: str) -> str:
    """E.g. ``MLflow metric 'accuracy' of <subject> (a ratio from 0 to 1).``"""
    for suffix, unit in _UNITS:
        if name.endswith(suffix):
            key = name.removesuffix(suffix) if suffix == "_ratio" else name
            return f"MLflow metric {key!r} of {subject} ({unit})."
    return f"MLflow metric {name!r} of {subject} (no unit)."


def _named_families(
    prefix: str, subject: str, labels: list[str]
) -> tuple[dict[str, GaugeMetricFamily], Callable[[str], GaugeMetricFamily]]:
    """Families made on demand, one per metric name (``prefix`` + name with its unit)."""
    families: dict[str, GaugeMetricFamily] = {}

    def family(name: str) -> GaugeMetricFamily:
        found = families.get(name)
        if found is None:
            found = families[name] = GaugeMetricFamily(
                f"{prefix}{name}", _metric_help(subject, name), labels=labels
            )
        return found

    return families, family


class RunCollector(Collector):
    """Runs: the latest finished run of each (experiment, run name) and run counts.

    Exposition (one metric name per MLflow metric key, its unit at the end, see
    :mod:`mlflow_exporter.units`; one series per experiment and run name: a run name that
    repeats across runs still gives one series, from its latest finished run)::

        # HELP mlflow_run_accuracy_ratio MLflow metric 'accuracy' of the latest ...
        # TYPE mlflow_run_accuracy_ratio gauge
        mlflow_run_accuracy_ratio{experiment="wine-classifier",run_name="SVC"} 0.97
        # TYPE mlflow_run_fit_time_seconds gauge
        mlflow_run_fit_time_seconds{experiment="wine-classifier",run_name="SVC"} 0.012
        # TYPE mlflow_run_log_loss gauge
        mlflow_run_log_loss{experiment="wine-classifier",run_name="SVC"} 0.08
        # HELP mlflow_run_start_timestamp_seconds Start time of the latest finished run ...
        # TYPE mlflow_run_start_timestamp_seconds gauge
        mlflow_run_start_timestamp_seconds{experiment="wine-classifier",run_name="SVC"} 1.7e+09
        # HELP mlflow_experiment_runs Active runs by status among the newest runs read ...
        # TYPE mlflow_experiment_runs gauge
        mlflow_experiment_runs{experiment="wine-classifier",status="FINISHED"} 12.0

    The runs are the newest of each experiment (``EXPORTER_RUNS_PER_EXPERIMENT``): the counts
    are the experiment's counts while it holds fewer runs, else the status mix of its newest
    runs (``wine_exporter_run_cap_reached`` is then 1).

    Args:
        state: Returns the current exporter state.
    """

    def __init__(self, state: StateReader) -> None:
        self._state = state

    def collect(self) -> Iterator[Metric]:
        """The families with one sample per series of the current snapshot."""
        snapshot = self._state().snapshot
        if snapshot is None:
            return
        families, family = _named_families(
            "mlflow_run_",
            "the latest finished run of each run name, by experiment",
            ["experiment", "run_name"],
        )
        starts = GaugeMetricFamily(
            "mlflow_run_start_timestamp_seconds",
            "Start time of the latest finished run of each run name, by experiment.",
            labels=["experiment", "run_name"],
        )
        counts = GaugeMetricFamily(
            "mlflow_experiment_runs",
            "Active (not deleted) runs by status among the newest runs the exporter reads "
            "of an experiment (all of them up to EXPORTER_RUNS_PER_EXPERIMENT).",
            labels=["experiment", "status"],
        )
        for experiment in snapshot.experiments:
            for status, count in experiment.runs_by_status:
                counts.add_metric([experiment.name, status], count)
            for run in experiment.latest_runs:
                if run.start_time_seconds is not None:
                    starts.add_metric([experiment.name, run.run_name], run.start_time_seconds)
                for name, value in run.metrics:
                    family(name).add_metric([experiment.name, run.run_name], value)
        yield from (families[name] for name in sorted(families))
        yield from (starts, counts)


class RegistryCollector(Collector):
    """The model registry: aliases, the metrics of the runs behind them, version counts.

    Exposition (the run metrics named as for :class:`RunCollector`)::

        # HELP mlflow_model_alias_info The version and run an alias of a registered model ...
        # TYPE mlflow_model_alias_info gauge
        mlflow_model_alias_info{alias="champion",model="wine",run_id="3f2a",version="4"} 1.0
        # HELP mlflow_model_alias_version The version number an alias points to.
        # TYPE mlflow_model_alias_version gauge
        mlflow_model_alias_version{alias="champion",model="wine-classifier"} 4.0
        # HELP mlflow_model_alias_accuracy_ratio MLflow metric 'accuracy' of the run behind ...
        # TYPE mlflow_model_alias_accuracy_ratio gauge
        mlflow_model_alias_accuracy_ratio{alias="champion",model="wine-classifier"} 0.98
        # HELP mlflow_model_versions Versions of a registered model.
        # TYPE mlflow_model_versions gauge
        mlflow_model_versions{model="wine-classifier"} 6.0

    Args:
        state: Returns the current exporter state.
    """

    def __init__(self, state: StateReader) -> None:
        self._state = state

    def collect(self) -> Iterator[Metric]:
        """The families with one sample per model and alias of the current snapshot."""
        snapshot = self._state().snapshot
        if snapshot is None:
            return
        info = GaugeMetricFamily(
            "mlflow_model_alias_info",
            "The version and run an alias of a registered model points to (always 1).",
            labels=["model", "alias", "version", "run_id"],
        )
        number = GaugeMetricFamily(
            "mlflow_model_alias_version",
            "The version number an alias of a registered model points to.",
            labels=["model", "alias"],
        )
        versions = GaugeMetricFamily(
            "mlflow_model_versions",
            "Versions registered for a registered model (the newest version's number).",
            labels=["model"],
        )
        families, family = _named_families(
            "mlflow_model_alias_",
            "the run behind the version an alias points to (e.g. the champion's)",
            ["model", "alias"],
        )
        for model in snapshot.models:
            versions.add_metric([model.name], model.versions)
            for alias in model.aliases:
                info.add_metric([model.name, alias.alias, alias.version, alias.run_id], 1)
                if alias.version.isdigit():
                    number.add_metric([model.name, alias.alias], int(alias.version))
                for name, value in alias.metrics:
                    family(name).add_metric([model.name, alias.alias], value)
        yield from (info, number)
        yield from (families[name] for name in sorted(families))
        yield versions


#: The exporter's own metrics (prefix ``wine_exporter_``, which nothing of MLflow's own
#: ``/metrics`` uses): name -> (type, help).
_EXPORTER_METRICS: dict[str, tuple[str, str]] = {
    "mlflow_up": ("gauge", "Whether the last refresh reached MLflow (1) or not (0)."),
    "wine_exporter_last_refresh_success_timestamp_seconds": (
        "gauge",
        "Unix time of the last successful refresh from MLflow, when the snapshot served was "
        "read (0 before the first).",
    ),
    "wine_exporter_last_refresh_duration_seconds": (
        "gauge",
        "Seconds the last refresh took, successful or not.",
    ),
    "wine_exporter_refreshes": ("counter", "Refreshes from MLflow attempted."),
    "wine_exporter_refresh_errors": (
        "counter",
        "Refreshes from MLflow that failed (the last snapshot stayed in place).",
    ),
    "wine_exporter_last_refresh_requests": (
        "gauge",
        "MLflow REST requests made by the last successful refresh.",
    ),
    "wine_exporter_last_refresh_runs": (
        "gauge",
        "Runs read from MLflow by the last successful refresh.",
    ),
    "wine_exporter_run_window": (
        "gauge",
        "Newest runs the last successful refresh read at most per experiment.",
    ),
    "wine_exporter_run_cap_reached": (
        "gauge",
        "1 when the last successful refresh left older runs unread (an experiment held more "
        "runs than the window), else 0.",
    ),
    "wine_exporter_dropped_items": (
        "gauge",
        "Items left out of the last snapshot, by kind: by the cardinality caps "
        "(experiments, run_names, metrics, models) or metric keys without a known unit "
        "(unknown_metrics).",
    ),
}


class ExporterCollector(Collector):
    """The exporter itself: reachability of MLflow, freshness and cost of the snapshot.

    Exposition (the snapshot's age is ``time() - wine_exporter_last_refresh_success_...``)::

        # HELP mlflow_up Whether the last refresh reached MLflow (1) or not (0).
        # TYPE mlflow_up gauge
        mlflow_up 1.0
        # TYPE wine_exporter_last_refresh_success_timestamp_seconds gauge
        wine_exporter_last_refresh_success_timestamp_seconds 1.7e+09
        # TYPE wine_exporter_last_refresh_duration_seconds gauge
        wine_exporter_last_refresh_duration_seconds 0.045
        # TYPE wine_exporter_refreshes counter
        wine_exporter_refreshes_total 40.0
        # TYPE wine_exporter_refresh_errors counter
        wine_exporter_refresh_errors_total 2.0
        # TYPE wine_exporter_last_refresh_requests gauge
        wine_exporter_last_refresh_requests 4.0
        # TYPE wine_exporter_last_refresh_runs gauge
        wine_exporter_last_refresh_runs 200.0
        # TYPE wine_exporter_run_window gauge
        wine_exporter_run_window 200.0
        # TYPE wine_exporter_run_cap_reached gauge
        wine_exporter_run_cap_reached 1.0
        # TYPE wine_exporter_dropped_items gauge
        wine_exporter_dropped_items{kind="run_names"} 0.0

    (HELP lines shortened here.) The success timestamp is 0 until the first successful
    refresh. Counters have no ``_created`` series.
    """

    def __init__(self, state: StateReader) -> None:
        self._state = state

    def collect(self) -> Iterator[Metric]:
        """The families for the current state."""
        state = self._state()
        snapshot = state.snapshot
        values: dict[str, float] = {
            "mlflow_up": float(state.up),
            "wine_exporter_last_refresh_success_timestamp_seconds": state.last_success or 0.0,
            "wine_exporter_last_refresh_duration_seconds": (
                math.nan if state.last_duration is None else state.last_duration
            ),
            "wine_exporter_refreshes": state.refreshes,
            "wine_exporter_refresh_errors": state.errors,
            "wine_exporter_last_refresh_requests": snapshot.requests if snapshot else 0,
            "wine_exporter_last_refresh_runs": snapshot.runs_read if snapshot else 0,
            "wine_exporter_run_window": snapshot.run_window if snapshot else 0,
            "wine_exporter_run_cap_reached": float(snapshot.run_cap_reached) if snapshot else 0,
        }
        for name, value in values.items():
            kind, doc = _EXPORTER_METRICS[name]
            if kind == "counter":
                yield CounterMetricFamily(name, doc, value=value)
            else:
                yield GaugeMetricFamily(name, doc, value=value)
        dropped = GaugeMetricFamily(
            "wine_exporter_dropped_items",
            _EXPORTER_METRICS["wine_exporter_dropped_items"][1],
            labels=["kind"],
        )
        counts = dict(snapshot.dropped) if snapshot else {}
        for kind in DROP_KINDS:
            dropped.add_metric([kind], counts.get(kind, 0))
        yield dropped


class FloorCollector(Collector):
    """The stack's accuracy floor, which the alert on the champion's accuracy compares with.

    Exposition::

        # HELP wine_champion_accuracy_floor_ratio Lowest test accuracy a champion may ...
        # TYPE wine_champion_accuracy_floor_ratio gauge
        wine_champion_accuracy_floor_ratio 0.9
    """

    def __init__(self, floor: float) -> None:
        self._floor = floor

    def collect(self) -> Iterator[Metric]:
        """One gauge: the floor from the settings (``WINE_MIN_ACCURACY``)."""
        yield GaugeMetricFamily(
            "wine_champion_accuracy_floor_ratio",
            "Lowest test accuracy a champion may have (WINE_MIN_ACCURACY, which training "
            "promotes by).",
            value=self._floor,
        )


class Exposition:
    """Renders ``/metrics``: the snapshot's metrics once per snapshot, the live ones each time.

    The run and registry metrics only change when a refresh swaps in a new snapshot, so
    their text is rendered once per snapshot and format and reused by every scrape; only
    the exporter's own metrics and the process metrics are rendered per scrape. A scrape
    then costs little CPU even while a refresh parses MLflow's answers.

    Args:
        state: Returns the current exporter state.
        accuracy_floor: The stack's accuracy floor (``settings.min_accuracy``).
    """

    def __init__(
        self,
        state: StateReader,
        accuracy_floor: float = DEFAULT_MIN_ACCURACY,
    ) -> None:
        self._state = state
        self._snapshot_metrics = CollectorRegistry()
        self._snapshot_metrics.register(RunCollector(lambda: self._rendering))
        self._snapshot_metrics.register(RegistryCollector(lambda: self._rendering))
        self._snapshot_metrics.register(FloorCollector(accuracy_floor))
        self._live_metrics = CollectorRegistry()
        ProcessCollector(registry=self._live_metrics)
        self._live_metrics.register(ExporterCollector(state))
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
    accuracy_floor: float = DEFAULT_MIN_ACCURACY,
) -> CollectorRegistry:
    """A private registry holding the collectors and the process metrics.

    Args:
        state: Returns the current exporter state.
        accuracy_floor: The stack's accuracy floor (``settings.min_accuracy``).
    """
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)  # process_* (memory, CPU, open files) of the exporter
    registry.register(RunCollector(state))
    registry.register(RegistryCollector(state))
    registry.register(ExporterCollector(state))
    registry.register(FloorCollector(accuracy_floor))
    return registry
