"""Which Prometheus metric name an MLflow metric key gets: one unit per metric name.

MLflow keys carry no unit, and one series name for all of them (``accuracy`` next to
``fit_time_seconds`` next to ``log_loss``) would mix units. So every key the exporter
publishes becomes a metric name of its own, with its unit at the end
(https://prometheus.io/docs/practices/naming/):

- quality scores between 0 and 1 (``accuracy``, ``precision_*``, ``recall_*``, ``f1_*``,
  ``roc_auc_*``, ``balanced_accuracy``, ``cv_accuracy_*``) get ``_ratio``:
  ``accuracy`` → ``accuracy_ratio``;
- the ONNX parity figures training logs for every candidate: ``onnx_max_abs_diff`` (the
  largest difference of a probability, between 0 and 1) gets ``_ratio``;
  ``onnx_label_mismatches`` (a count) has no unit and keeps its name;
- ``log_loss`` has no unit and keeps its name;
- a key that already ends in a base unit (``_seconds``, ``_bytes``, ``_ratio``) keeps its
  name: ``fit_time_seconds`` → ``fit_time_seconds``;
- each of these may start with ``best_`` or ``champion_`` (the training session's summary
  run logs the best candidate's and the champion's metrics that way);
- any other key has no known unit: it is not exported, and counted in
  ``wine_exporter_dropped_items{kind="unknown_metrics"}``. Log such a metric with its unit
  in its key (e.g. ``train_time_seconds``) to have it exported.

The collectors then prefix the result: ``mlflow_run_accuracy_ratio``,
``mlflow_model_alias_accuracy_ratio``.
"""

from __future__ import annotations

import re

#: Quality scores, all between 0 and 1 (their variants: ``f1_macro``, ``roc_auc_ovr`` …).
_RATIO = re.compile(
    r"(?:best_|champion_)?"
    r"(?:(?:accuracy|balanced_accuracy|precision|recall|f1|roc_auc|cv_accuracy)(?:_[a-z0-9]+)*"
    r"|onnx_max_abs_diff)"
)
#: Scores without a unit.
_UNITLESS = re.compile(r"(?:best_|champion_)?(?:log_loss|onnx_label_mismatches|feedback_rows)")
#: Keys that already name a base unit.
_WITH_UNIT = re.compile(r"[a-z][a-z0-9_]*_(?:seconds|bytes|ratio)")
#: Names the collectors use for other facts; a key may not take them.
_RESERVED = frozenset({"start_timestamp_seconds"})


def unit_name(key: str) -> str | None:
    """The metric name part for a sanitised MLflow key, or None when its unit is unknown.

    Args:
        key: The key, already limited to ``[a-zA-Z0-9_]`` (see
            :func:`~mlflow_exporter.snapshot.metric_label`), e.g. ``"f1_weighted"``.

    Returns:
        The name with its unit, e.g. ``"f1_weighted_ratio"``, ``"log_loss"``,
        ``"fit_time_seconds"``; None for a key such as ``"val_loss"`` or ``"mse"``.
    """
    lowered = key.lower()
    if _WITH_UNIT.fullmatch(lowered) or _UNITLESS.fullmatch(lowered):
        name = lowered
    elif _RATIO.fullmatch(lowered):
        name = f"{lowered}_ratio"
    else:
        return None
    return None if name in _RESERVED else name
