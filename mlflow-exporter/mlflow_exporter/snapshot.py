"""The immutable snapshot the collectors render, and how it is built from MLflow records.

Building is a pure function of plain records (:class:`RunRecord`, :class:`ModelRecord`), so
the rules that keep the exposition valid and its cardinality bounded are tested without
MLflow: latest *finished* run per (experiment, run name), sanitised label values, metric
keys turned into metric names with their unit (:mod:`mlflow_exporter.units`), no two series
with the same labels, and hard caps on experiments, run names, metrics and models.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from mlflow_exporter.units import unit_name

#: Run statuses MLflow knows; each experiment reports a count for every one of them.
RUN_STATUSES: tuple[str, ...] = ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED")

#: What a snapshot leaves out, by kind; ``wine_exporter_dropped_items`` reports each one.
#: The cardinality caps drop experiments, run names, metrics and models; metric keys
#: without a known unit are ``unknown_metrics`` (see :mod:`mlflow_exporter.units`).
DROP_KINDS: tuple[str, ...] = ("experiments", "run_names", "metrics", "models", "unknown_metrics")

#: Longest label value the exporter emits (longer names are cut).
MAX_LABEL_LENGTH = 128

_NOT_NAME_CHAR = re.compile(r"[^a-zA-Z0-9_]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def metric_label(key: str) -> str:
    """Turns an MLflow metric key into a label value that is also a valid metric name part.

    Args:
        key: The MLflow key, e.g. ``"val/loss (top-1)"``.

    Returns:
        Only ``[a-zA-Z0-9_]``, at most :data:`MAX_LABEL_LENGTH` characters, e.g.
        ``"val_loss__top_1_"``; ``"_"`` for an empty key.
    """
    return _NOT_NAME_CHAR.sub("_", key)[:MAX_LABEL_LENGTH] or "_"


def text_label(value: str | None, empty: str = "(unnamed)") -> str:
    """Makes a free-text name (experiment, run, model) safe as a label value.

    Control characters (newlines, tabs) become one space, the text is trimmed and cut to
    :data:`MAX_LABEL_LENGTH` characters. Quotes and backslashes stay: the exposition format
    escapes them.

    Args:
        value: The name as MLflow holds it.
        empty: What an empty or missing name becomes.
    """
    cleaned = _CONTROL.sub(" ", value or "").strip()[:MAX_LABEL_LENGTH].strip()
    return cleaned or empty


@dataclass(frozen=True)
class RunRecord:
    """The facts of one MLflow run the exporter uses."""

    run_id: str
    experiment_id: str
    run_name: str | None
    status: str
    start_time_ms: int | None
    metrics: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ExperimentRecord:
    """One MLflow experiment."""

    experiment_id: str
    name: str


@dataclass(frozen=True)
class ModelRecord:
    """One registered model: its aliases (alias -> version), the run of each alias's version
    and how many versions it holds."""

    name: str
    aliases: Mapping[str, str]
    version_runs: Mapping[str, str | None]
    versions: int = 0


@dataclass(frozen=True)
class Limits:
    """The cardinality bounds of one snapshot (see the README)."""

    max_experiments: int = 20
    max_run_names: int = 50
    max_metrics: int = 50
    max_models: int = 20
    run_name_suffix: str = ""


@dataclass(frozen=True)
class LatestRun:
    """The latest finished run of one run name in one experiment.

    ``metrics`` pairs a metric name with its unit (``accuracy_ratio``) with the value.
    """

    run_name: str
    start_time_seconds: float | None
    metrics: tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class ExperimentFacts:
    """What one experiment contributes: run counts by status and the latest runs."""

    name: str
    runs_by_status: tuple[tuple[str, int], ...]
    latest_runs: tuple[LatestRun, ...]


@dataclass(frozen=True)
class AliasFacts:
    """One alias of a registered model and the metrics of the run behind its version."""

    alias: str
    version: str
    run_id: str
    metrics: tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class ModelFacts:
    """One registered model: number of versions and its aliases."""

    name: str
    versions: int
    aliases: tuple[AliasFacts, ...]


@dataclass(frozen=True)
class Snapshot:
    """Everything one refresh read, ready to render. Never changed after it is built."""

    experiments: tuple[ExperimentFacts, ...]
    models: tuple[ModelFacts, ...]
    runs_read: int
    requests: int
    dropped: tuple[tuple[str, int], ...]
    run_window: int = 0
    run_cap_reached: bool = False


def _metric_pairs(
    metrics: Mapping[str, float], limit: int, dropped: Counter[str]
) -> tuple[tuple[str, float], ...]:
    """(name with unit, value) pairs in key order: de-duplicated, capped, known units only."""
    pairs: dict[str, float] = {}
    for key in sorted(metrics):
        label = unit_name(metric_label(key))
        if label is None:
            dropped["unknown_metrics"] += 1
            continue
        if label in pairs or len(pairs) >= limit:
            dropped["metrics"] += 1
            continue
        value = metrics[key]
        pairs[label] = float(value) if value is not None else math.nan
    return tuple(pairs.items())


def _is_newer(run: RunRecord, than: RunRecord) -> bool:
    return (run.start_time_ms or 0, run.run_id) > (than.start_time_ms or 0, than.run_id)


def build_snapshot(
    experiments: Sequence[ExperimentRecord],
    runs: Iterable[RunRecord],
    models: Sequence[ModelRecord],
    alias_runs: Mapping[str, RunRecord],
    limits: Limits,
    requests: int = 0,
    run_window: int = 0,
    run_cap_reached: bool = False,
) -> Snapshot:
    """Builds the snapshot the collectors render.

    Args:
        experiments: The watched experiments, most relevant first (the cap keeps the first).
        runs: The active runs read from those experiments: all of them, or the newest
            ``run_window`` of each; run counts and the latest runs come from these.
        models: The registered models, most relevant first.
        alias_runs: The runs behind alias versions, by run id.
        limits: The cardinality bounds.
        requests: How many MLflow REST requests the refresh made.
        run_window: The newest runs read per experiment (0: not bounded).
        run_cap_reached: Whether an experiment held more runs than were read.

    Returns:
        An immutable snapshot in which no two series of a metric share their labels.
    """
    dropped: Counter[str] = Counter()
    suffix = re.compile(limits.run_name_suffix) if limits.run_name_suffix else None
    kept = experiments[: limits.max_experiments]
    dropped["experiments"] += len(experiments) - len(kept)
    names = {e.experiment_id: text_label(e.name) for e in kept}

    counts: dict[str, Counter[str]] = {i: Counter() for i in names}
    latest: dict[str, dict[str, RunRecord]] = {i: {} for i in names}
    runs_read = 0
    for run in runs:
        runs_read += 1
        if run.experiment_id not in names:
            continue
        counts[run.experiment_id][run.status] += 1
        if run.status != "FINISHED":
            continue
        name = text_label(suffix.sub("", run.run_name or "") if suffix else run.run_name)
        best = latest[run.experiment_id].get(name)
        if best is None or _is_newer(run, best):
            latest[run.experiment_id][name] = run

    facts: dict[str, ExperimentFacts] = {}
    for experiment_id, label in names.items():
        if label in facts:  # two names that only differ beyond the cut
            dropped["experiments"] += 1
            continue
        groups = sorted(
            latest[experiment_id].items(),
            key=lambda item: (item[1].start_time_ms or 0, item[1].run_id),
            reverse=True,
        )
        dropped["run_names"] += max(0, len(groups) - limits.max_run_names)
        latest_runs = tuple(
            LatestRun(
                run_name=name,
                start_time_seconds=None if run.start_time_ms is None else run.start_time_ms / 1e3,
                metrics=_metric_pairs(run.metrics, limits.max_metrics, dropped),
            )
            for name, run in sorted(groups[: limits.max_run_names])
        )
        statuses = counts[experiment_id]
        extra = sorted(s for s in statuses if s not in RUN_STATUSES)
        facts[label] = ExperimentFacts(
            name=label,
            runs_by_status=tuple((s, statuses[s]) for s in (*RUN_STATUSES, *extra)),
            latest_runs=latest_runs,
        )

    model_facts: dict[str, ModelFacts] = {}
    for model in models[: limits.max_models]:
        label = text_label(model.name)
        if label in model_facts:
            continue
        aliases = []
        for alias, version in sorted(model.aliases.items()):
            run_id = model.version_runs.get(version) or ""
            alias_run = alias_runs.get(run_id)
            metrics = (
                _metric_pairs(alias_run.metrics, limits.max_metrics, dropped) if alias_run else ()
            )
            aliases.append(AliasFacts(text_label(alias), str(version), run_id, metrics))
        model_facts[label] = ModelFacts(label, model.versions, tuple(aliases))
    dropped["models"] += max(0, len(models) - limits.max_models)

    return Snapshot(
        experiments=tuple(facts[k] for k in sorted(facts)),
        models=tuple(model_facts[k] for k in sorted(model_facts)),
        runs_read=runs_read,
        requests=requests,
        dropped=tuple(sorted((kind, n) for kind, n in dropped.items() if n)),
        run_window=run_window,
        run_cap_reached=run_cap_reached,
    )
