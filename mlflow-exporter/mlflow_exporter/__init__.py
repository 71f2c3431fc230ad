"""The MLflow exporter: republishes MLflow run and registry facts as Prometheus metrics.

A background :class:`~mlflow_exporter.refresher.Refresher` reads MLflow every few seconds
with a bounded number of REST calls and swaps in an immutable
:class:`~mlflow_exporter.snapshot.Snapshot`; ``GET /metrics`` renders only that snapshot
through the collectors of :mod:`mlflow_exporter.collectors` and never calls MLflow.
Nothing here does work at import time.
"""
