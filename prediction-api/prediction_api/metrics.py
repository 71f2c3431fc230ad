"""The API's own Prometheus metrics, in a private registry (prefix ``wine_api_``).

Exposition (one sample of each; label values are bounded: route templates, the three
class names, model versions, the 13 features, the refusal kinds)::

    wine_api_requests_total{route="/predict",method="POST",status="200"} 42.0
    wine_api_request_duration_seconds_bucket{route="/predict",method="POST",status="200",
                                             le="0.001"} 40.0
    wine_api_requests_in_progress 1.0
    wine_api_predictions_total{class_name="Cultivar 1",model_version="3"} 17.0
    wine_api_model_info{model_name="wine-classifier",model_version="3",alias="champion",
                        run_id="ab12…"} 1.0
    wine_api_model_loaded 1.0
    wine_api_model_loads_total{kind="initial",result="success"} 1.0
    wine_api_model_refused_total{reason="format"} 1.0
    wine_api_model_last_load_timestamp_seconds 1.7e+09
    wine_api_registry_check_failures_total 0.0
    wine_api_input_out_of_range_total{feature="proline",side="above"} 2.0
    wine_api_prediction_log_rows_total 1200.0
    wine_api_prediction_log_dropped_total{reason="queue_full"} 0.0
    wine_api_prediction_log_queued_rows 3.0
    wine_api_feedback_total{outcome="correct"} 9.0
    wine_api_monitoring_refresh_failures_total 0.0
    process_resident_memory_bytes 5.2e+07
    python_info{implementation="CPython",major="3",minor="11",...} 1.0

``wine_api_input_out_of_range_total`` counts the values the answers warned about: outside
the range the served version was trained on (the ranges logged with it), by side. No
metric has a ``_created`` series (:func:`prometheus_client.disable_created_metrics`: they
would double the series for no use, since ``rate()`` and ``increase()`` handle counter
resets).

Several worker processes (``python -m prediction_api`` with ``WINE_API_WORKERS``): the
served API always runs prometheus_client's multiprocess mode (one worker too), each worker
writing its values to files in a directory the gunicorn master creates empty before it
forks; whichever worker answers a scrape reads them all:

- counters and histograms are summed over every worker that ever ran (a replaced worker's
  counts stay, so totals never drop);
- ``wine_api_requests_in_progress`` and ``wine_api_prediction_log_queued_rows`` are summed
  over the live workers (``livesum``);
- ``wine_api_model_loaded`` is the minimum over the live workers (``livemin``): 0 as soon
  as one worker has no model (its requests fail with 503), 1 when every worker serves one;
- ``wine_api_model_last_load_timestamp_seconds`` is the latest load of a live worker
  (``livemax``);
- ``wine_api_model_info`` is a gauge, one series per live worker (``liveall``: a ``pid``
  label) with the version it serves at 1 and versions it served before at 0; a dead
  worker's series disappear (the master's ``child_exit`` hook);
- ``process_resident_memory_bytes``, ``process_cpu_seconds_total``,
  ``process_open_fds``, ``process_max_fds``, ``process_virtual_memory_bytes`` and
  ``process_start_time_seconds`` come once per live worker with a ``pid`` label
  (:class:`LiveWorkersCollector`, reading ``/proc`` of the pids that have live files in the
  directory); sum them for the API's total. ``python_info`` is the same for all workers;
  the garbage-collector metrics (``python_gc_*``) are per process and left out.

In one process without that directory (tests that build the app themselves), the metrics
live in a private registry with the ``process_*`` (no ``pid`` label) and ``python_gc_*``
metrics of that process.

The live quality and drift figures (``wine_api_live_accuracy``, ``wine_api_live_labelled``,
``wine_api_feature_drift``, ``wine_api_drift_window_rows``,
``wine_api_monitoring_last_refresh_timestamp_seconds``) are not kept here: a collector of
:mod:`prediction_api.quality` on :attr:`ApiMetrics.registry` yields the snapshot its worker
last read from the prediction log. Every worker reads the same shared database, so whichever
worker answers a scrape gives the same figures (up to one refresh interval apart).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    values,
)
from prometheus_client.core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from prediction_api.serving import Refusal, ServedModel, VersionRef
from wine_mlops.features import FEATURE_NAMES
from wine_mlops.model_files import REFUSAL_KINDS

#: Latency buckets in seconds: fine below 10 ms so that 1 ms and 5 ms fall apart.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01,
    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip

LOAD_KINDS = ("initial", "reload")
LOAD_RESULTS = ("success", "failure")

#: The environment variable that turns prometheus_client's multiprocess mode on.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

_LIVE_FILE = re.compile(r"^gauge_live[a-z]+_(\d+)\.db$")

#: The most label sets whose children :class:`ApiMetrics` keeps at hand: the real ones are
#: few (routes, methods and statuses; classes and versions); a client inventing methods must
#: not grow the cache without end (those requests take the ordinary look-up).
CHILD_CACHE_SIZE = 512


def live_worker_pids(directory: str | Path) -> list[int]:
    """The pids of the live workers: those with a live gauge file in the multiprocess
    directory (the master removes a dead worker's) whose process still exists."""
    pids = {int(m.group(1)) for name in os.listdir(directory) if (m := _LIVE_FILE.match(name))}
    return sorted(pid for pid in pids if Path(f"/proc/{pid}").exists())


def _constant(pid: int) -> Callable[[], int]:
    return lambda: pid


class LiveWorkersCollector(Collector):
    """The ``process_*`` metrics of every live worker, each sample with a ``pid`` label::

        process_resident_memory_bytes{pid="41"} 6.1e+07
        process_resident_memory_bytes{pid="42"} 5.9e+07
        process_cpu_seconds_total{pid="41"} 3.2

    Args:
        directory: The multiprocess directory whose live files name the workers.
    """

    def __init__(self, directory: str | Path) -> None:
        self._directory = directory

    def collect(self) -> Iterator[Metric]:
        """Reads ``/proc`` of each live worker and yields one family per metric name."""
        families: dict[str, Metric] = {}
        for pid in live_worker_pids(self._directory):
            # a private collector per pid, never registered (registry=None)
            for family in ProcessCollector(pid=_constant(pid), registry=None).collect():
                merged = families.setdefault(
                    family.name, Metric(family.name, family.documentation, family.type)
                )
                for sample in family.samples:
                    merged.add_sample(sample.name, {**sample.labels, "pid": str(pid)}, sample.value)
        yield from families.values()


class ApiMetrics:
    """Every metric the API exports, registered in one private registry.

    Building one turns ``_created`` series off for the whole process (a switch of
    ``prometheus_client``).

    Args:
        registry: The registry to use; a new private one by default (so that two apps in
            one process, e.g. in tests, never share counters). Unused in multiprocess mode.
        multiprocess_dir: The directory of prometheus_client's multiprocess mode (a worker
            of several); :attr:`registry` then reads every worker's files on each scrape.
            It must be the one named by the ``PROMETHEUS_MULTIPROC_DIR`` variable.
    """

    def __init__(
        self, registry: CollectorRegistry | None = None, multiprocess_dir: str | None = None
    ) -> None:
        disable_created_metrics()
        self.registry = registry if registry is not None else CollectorRegistry()
        own: CollectorRegistry | None = self.registry
        if multiprocess_dir is not None:
            if os.environ.get(MULTIPROC_ENV) != multiprocess_dir:
                raise ValueError(f"{MULTIPROC_ENV} must name {multiprocess_dir}")
            if not getattr(values.ValueClass, "_multiprocess", False):
                # chosen when prometheus_client was imported, maybe before the variable was set
                values.ValueClass = values.MultiProcessValue()
            own = None  # the metrics write to files; the registry reads them all
            MultiProcessCollector(self.registry, path=multiprocess_dir)
            self.registry.register(LiveWorkersCollector(multiprocess_dir))
        else:
            ProcessCollector(registry=self.registry)  # process_*: memory, CPU, open files
            self.registry.register(GC_COLLECTOR)  # python_gc_*
        self.registry.register(PLATFORM_COLLECTOR)  # python_info
        labels = ("route", "method", "status")
        self.requests = Counter("wine_api_requests", "HTTP requests answered", labels, registry=own)
        self.latency = Histogram(
            "wine_api_request_duration_seconds",
            "Time from request received to response sent",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=own,
        )
        self.in_progress = Gauge(
            "wine_api_requests_in_progress",
            "HTTP requests being answered right now (scrapes of /metrics not included)",
            registry=own,
            multiprocess_mode="livesum",
        )
        self.predictions = Counter(
            "wine_api_predictions",
            "Wines classified, by predicted class and serving model version",
            ("class_name", "model_version"),
            registry=own,
        )
        self.model = Gauge(
            "wine_api_model_info",
            "The model version served (1) and those served before (0), per worker",
            ("model_name", "model_version", "alias", "run_id"),
            registry=own,
            multiprocess_mode="liveall",
        )
        self._served_labels: tuple[str, ...] | None = None
        self.loaded = Gauge(
            "wine_api_model_loaded",
            "1 when every worker has a model loaded and serves it, 0 when one has none",
            registry=own,
            multiprocess_mode="livemin",
        )
        self.model_loads = Counter(
            "wine_api_model_loads",
            "Model loads: the first one (initial) and hot swaps (reload), by result",
            ("kind", "result"),
            registry=own,
        )
        self.refused = Counter(
            "wine_api_model_refused",
            "Model versions refused (never served): once each time the alias points at one",
            ("reason",),
            registry=own,
        )
        self.last_load = Gauge(
            "wine_api_model_last_load_timestamp_seconds",
            "Unix time of the last successful model load",
            registry=own,
            multiprocess_mode="livemax",
        )
        self.registry_failures = Counter(
            "wine_api_registry_check_failures",
            "Failed look-ups of the served alias in the MLflow registry",
            registry=own,
        )
        self.out_of_range = Counter(
            "wine_api_input_out_of_range",
            "Input values outside the range the serving model version was trained on (the "
            "ranges logged with it), by feature and side: each one a warning answered",
            ("feature", "side"),
            registry=own,
        )
        self.prediction_log_rows = Counter(
            "wine_api_prediction_log_rows",
            "Rows written to the prediction log (one per answered wine)",
            registry=own,
        )
        self.prediction_log_dropped = Counter(
            "wine_api_prediction_log_dropped",
            "Answered wines not written to the prediction log: its queue was full "
            "(queue_full) or the database failed (db_error)",
            ("reason",),
            registry=own,
        )
        self.prediction_log_queued = Gauge(
            "wine_api_prediction_log_queued_rows",
            "Rows waiting to be written to the prediction log (all workers)",
            registry=own,
            multiprocess_mode="livesum",
        )
        self.feedback = Counter(
            "wine_api_feedback",
            "True classes recorded by POST /feedback, by whether the answer was right",
            ("outcome",),
            registry=own,
        )
        self.monitoring_failures = Counter(
            "wine_api_monitoring_refresh_failures",
            "Failed refreshes of the live accuracy and drift figures (the prediction log "
            "could not be read); the figures of the last good refresh stay exported",
            registry=own,
        )
        for reason in ("queue_full", "db_error"):
            self.prediction_log_dropped.labels(reason)
        self._feedback_children = {
            True: self.feedback.labels("correct"),
            False: self.feedback.labels("wrong"),
        }
        for kind in LOAD_KINDS:
            for result in LOAD_RESULTS:
                self.model_loads.labels(kind, result)
        for reason in REFUSAL_KINDS:
            self.refused.labels(reason)
        self._out_of_range = {
            side: [self.out_of_range.labels(name, side) for name in FEATURE_NAMES]
            for side in ("below", "above")
        }
        # The children of the request path's label sets, looked up once each: ``labels()``
        # takes a lock and converts every value on each call.
        self._request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._prediction_children: dict[tuple[str, str], Counter] = {}

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Counts one answered request and records its latency."""
        key = (route, method, status)
        children = self._request_children.get(key)
        if children is None:
            labels = (route, method, str(status))
            children = (self.requests.labels(*labels), self.latency.labels(*labels))
            if len(self._request_children) < CHILD_CACHE_SIZE:
                self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def count_predictions(self, class_name: str, model_version: str, count: int) -> None:
        """Adds ``count`` wines classified as ``class_name`` by ``model_version``."""
        key = (class_name, model_version)
        child = self._prediction_children.get(key)
        if child is None:
            child = self.predictions.labels(class_name, model_version)
            if len(self._prediction_children) < CHILD_CACHE_SIZE:
                self._prediction_children[key] = child
        child.inc(count)

    def count_feedback(self, correct: bool) -> None:
        """Counts one recorded true class: the answer was right (``correct``) or not."""
        self._feedback_children[correct].inc()

    def observe_out_of_range(self, below: np.ndarray, above: np.ndarray) -> None:
        """Adds per-feature counts of values below and above the served version's training
        ranges (13 counts each, in feature order)."""
        for side, counts in (("below", below), ("above", above)):
            if counts.any():
                for child, count in zip(self._out_of_range[side], counts.tolist(), strict=True):
                    if count:
                        child.inc(count)

    def model_loaded(self, served: ServedModel, kind: str) -> None:
        """Records a successful load and what is now served."""
        self.model_loads.labels(kind, "success").inc()
        self.last_load.set(served.loaded_at.timestamp())
        self.loaded.set(1)
        labels = (served.ref.name, served.ref.version, served.ref.alias, served.ref.run_id or "")
        if self._served_labels is not None and self._served_labels != labels:
            self.model.labels(*self._served_labels).set(0)
        self.model.labels(*labels).set(1)
        self._served_labels = labels

    def model_load_failed(self, ref: VersionRef, kind: str) -> None:
        """Records a failed load (the previous model, if any, keeps serving)."""
        self.model_loads.labels(kind, "failure").inc()

    def model_refused(self, refusal: Refusal) -> None:
        """Counts a refused version once, by the kind of refusal."""
        self.refused.labels(refusal.kind).inc()

    def registry_check_failed(self) -> None:
        """Records a failed look-up of the alias."""
        self.registry_failures.inc()
