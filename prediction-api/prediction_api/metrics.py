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
    process_resident_memory_bytes 5.2e+07
    python_info{implementation="CPython",major="3",minor="11",...} 1.0

``wine_api_input_out_of_range_total`` counts the values the answers warned about: outside
the range the served version was trained on (the ranges logged with it), by side. The
registry also holds the ``process_*`` metrics of the API's process and the ``python_*``
platform and garbage-collector metrics. No metric has a ``_created`` series
(:func:`prometheus_client.disable_created_metrics`: they would double the series for no
use, since ``rate()`` and ``increase()`` handle counter resets).
"""

from __future__ import annotations

import numpy as np
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    disable_created_metrics,
)

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


class ApiMetrics:
    """Every metric the API exports, registered in one private registry.

    Building one turns ``_created`` series off for the whole process (a switch of
    ``prometheus_client``).

    Args:
        registry: The registry to use; a new private one by default (so that two apps in
            one process, e.g. in tests, never share counters).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        disable_created_metrics()
        self.registry = registry if registry is not None else CollectorRegistry()
        ProcessCollector(registry=self.registry)  # process_*: memory, CPU, open files
        self.registry.register(PLATFORM_COLLECTOR)  # python_info
        self.registry.register(GC_COLLECTOR)  # python_gc_*
        labels = ("route", "method", "status")
        self.requests = Counter(
            "wine_api_requests", "HTTP requests answered", labels, registry=self.registry
        )
        self.latency = Histogram(
            "wine_api_request_duration_seconds",
            "Time from request received to response sent",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_progress = Gauge(
            "wine_api_requests_in_progress",
            "HTTP requests being answered right now (scrapes of /metrics not included)",
            registry=self.registry,
        )
        self.predictions = Counter(
            "wine_api_predictions",
            "Wines classified, by predicted class and serving model version",
            ("class_name", "model_version"),
            registry=self.registry,
        )
        self.model = Info("wine_api_model", "The model being served", registry=self.registry)
        self.loaded = Gauge(
            "wine_api_model_loaded", "1 when a model is loaded and served", registry=self.registry
        )
        self.model_loads = Counter(
            "wine_api_model_loads",
            "Model loads: the first one (initial) and hot swaps (reload), by result",
            ("kind", "result"),
            registry=self.registry,
        )
        self.refused = Counter(
            "wine_api_model_refused",
            "Model versions refused (never served): once each time the alias points at one",
            ("reason",),
            registry=self.registry,
        )
        self.last_load = Gauge(
            "wine_api_model_last_load_timestamp_seconds",
            "Unix time of the last successful model load",
            registry=self.registry,
        )
        self.registry_failures = Counter(
            "wine_api_registry_check_failures",
            "Failed look-ups of the served alias in the MLflow registry",
            registry=self.registry,
        )
        self.out_of_range = Counter(
            "wine_api_input_out_of_range",
            "Input values outside the range the serving model version was trained on (the "
            "ranges logged with it), by feature and side: each one a warning answered",
            ("feature", "side"),
            registry=self.registry,
        )
        for kind in LOAD_KINDS:
            for result in LOAD_RESULTS:
                self.model_loads.labels(kind, result)
        for reason in REFUSAL_KINDS:
            self.refused.labels(reason)
        self._out_of_range = {
            side: [self.out_of_range.labels(name, side) for name in FEATURE_NAMES]
            for side in ("below", "above")
        }

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Counts one answered request and records its latency."""
        key = (route, method, str(status))
        self.requests.labels(*key).inc()
        self.latency.labels(*key).observe(seconds)

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
        self.model.info(
            {
                "model_name": served.ref.name,
                "model_version": served.ref.version,
                "alias": served.ref.alias,
                "run_id": served.ref.run_id or "",
            }
        )

    def model_load_failed(self, ref: VersionRef, kind: str) -> None:
        """Records a failed load (the previous model, if any, keeps serving)."""
        self.model_loads.labels(kind, "failure").inc()

    def model_refused(self, refusal: Refusal) -> None:
        """Counts a refused version once, by the kind of refusal."""
        self.refused.labels(refusal.kind).inc()

    def registry_check_failed(self) -> None:
        """Records a failed look-up of the alias."""
        self.registry_failures.inc()
