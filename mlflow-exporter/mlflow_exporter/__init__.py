"""The MLflow exporter: republishes MLflow run and registry facts as Prometheus metrics.

A background :class:`~mlflow_exporter.refresher.Refresher` reads MLflow every few seconds
with a bounded number of REST calls and swaps in an immutable
:class:`~mlflow_exporter.snapshot.Snapshot`; ``GET /metrics`` renders only that snapshot
through the collectors of :mod:`mlflow_exporter.collectors` and never calls MLflow.
Nothing here does work at import time.

Metric names (https://prometheus.io/docs/practices/naming/):

- MLflow facts are ``mlflow_run_*``, ``mlflow_model_*`` and ``mlflow_experiment_runs``;
  ``mlflow_up`` says whether the last refresh reached MLflow.
- Each MLflow metric key gets a metric name of its own with its unit at the end, so no
  name mixes units: ``accuracy`` → ``mlflow_run_accuracy_ratio`` and
  ``mlflow_model_alias_accuracy_ratio``, ``log_loss`` → ``mlflow_run_log_loss`` (no unit),
  ``fit_time_seconds`` → ``mlflow_run_fit_time_seconds``. A key without a known unit is
  left out and counted in ``wine_exporter_dropped_items{kind="unknown_metrics"}``
  (rules in :mod:`mlflow_exporter.units`). The ``EXPORTER_MAX_*`` caps bound the series.
- The exporter's own metrics are ``wine_exporter_*``: MLflow's server exports
  ``mlflow_exporter_info`` and ``mlflow_http_*`` from its own ``/metrics``, scraped by the
  same Prometheus, so ``mlflow_exporter_*`` would mix two programs. Freshness is a
  timestamp (``wine_exporter_last_refresh_success_timestamp_seconds``; its age is
  ``time() - …`` in PromQL), counters end in ``_total`` and have no ``_created`` series.
"""
