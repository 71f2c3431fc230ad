"""Building the snapshot: which run wins, label hygiene, metric units, cardinality caps."""

from __future__ import annotations

import math

from mlflow_exporter.snapshot import (
    ExperimentRecord,
    Limits,
    ModelRecord,
    RunRecord,
    build_snapshot,
    metric_label,
    text_label,
)
from mlflow_exporter.units import unit_name
from model_training.evaluation import CANDIDATE_METRICS, ONNX_PARITY_METRICS

WINE = ExperimentRecord("1", "wine-classifier")


def run(
    run_id: str,
    name: str | None,
    start: int,
    status: str = "FINISHED",
    experiment: str = "1",
    **metrics: float,
) -> RunRecord:
    return RunRecord(run_id, experiment, name, status, start, metrics)


def with_metrics(
    run_id: str, name: str, start: int, metrics: dict[str, float], **kw: str
) -> RunRecord:
    return RunRecord(run_id, kw.get("experiment", "1"), name, "FINISHED", start, metrics)


def test_latest_finished_run_of_each_name_wins_and_names_never_repeat() -> None:
    runs = [
        run("a", "SVC", 1_000, accuracy=0.90),
        run("b", "SVC", 3_000, accuracy=0.95),
        run("c", "SVC", 5_000, status="RUNNING", accuracy=0.10),
        run("d", "SVC", 4_000, status="FAILED", accuracy=0.20),
        run("e", "KNeighborsClassifier", 2_000, accuracy=0.70),
    ]
    snapshot = build_snapshot([WINE], runs, [], {}, Limits())
    (experiment,) = snapshot.experiments
    latest = {r.run_name: r for r in experiment.latest_runs}
    assert list(latest) == ["KNeighborsClassifier", "SVC"]
    assert latest["SVC"].metrics == (("accuracy_ratio", 0.95),)
    assert latest["SVC"].start_time_seconds == 3.0
    assert dict(experiment.runs_by_status) == {
        "RUNNING": 1,
        "SCHEDULED": 0,
        "FINISHED": 3,
        "FAILED": 1,
        "KILLED": 0,
    }
    assert snapshot.runs_read == 5


def test_empty_experiment_and_run_without_metrics_are_reported() -> None:
    empty = ExperimentRecord("2", "empty")
    snapshot = build_snapshot([WINE, empty], [run("a", "SVC", 1)], [], {}, Limits())
    by_name = {e.name: e for e in snapshot.experiments}
    assert by_name["empty"].latest_runs == ()
    assert dict(by_name["empty"].runs_by_status)["FINISHED"] == 0
    assert by_name["wine-classifier"].latest_runs[0].metrics == ()


def test_metric_keys_are_sanitised_and_colliding_keys_give_one_series() -> None:
    snapshot = build_snapshot(
        [WINE],
        [
            with_metrics(
                "a",
                "SVC",
                1,
                {"fit/time_seconds": 1.0, "fit.time_seconds": 2.0, "F1-macro": math.nan},
            )
        ],
        [],
        {},
        Limits(),
    )
    metrics = dict(snapshot.experiments[0].latest_runs[0].metrics)
    assert set(metrics) == {"fit_time_seconds", "f1_macro_ratio"}
    assert metrics["fit_time_seconds"] == 2.0  # "fit.time…" sorts before "fit/time…"
    assert math.isnan(metrics["f1_macro_ratio"])
    assert dict(snapshot.dropped) == {"metrics": 1}


def test_every_metric_the_training_logs_gets_a_name_with_its_unit() -> None:
    names = {key: unit_name(key) for key in (*CANDIDATE_METRICS, *ONNX_PARITY_METRICS)}
    assert names["accuracy"] == "accuracy_ratio"
    assert names["f1_weighted"] == "f1_weighted_ratio"
    assert names["roc_auc_ovr"] == "roc_auc_ovr_ratio"
    assert names["cv_accuracy_std"] == "cv_accuracy_std_ratio"
    assert names["log_loss"] == "log_loss"
    assert names["fit_time_seconds"] == "fit_time_seconds"
    assert names["predict_time_per_row_seconds"] == "predict_time_per_row_seconds"
    assert names["onnx_max_abs_diff"] == "onnx_max_abs_diff_ratio"
    assert names["onnx_label_mismatches"] == "onnx_label_mismatches"
    assert None not in names.values()
    # the session run logs the best candidate's and the champion's with a prefix
    assert unit_name("best_accuracy") == "best_accuracy_ratio"
    assert unit_name("champion_log_loss") == "champion_log_loss"


def test_metric_keys_without_a_known_unit_are_left_out_and_counted() -> None:
    keys = {"mse": 1.0, "val_loss": 2.0, "accuracy": 0.9, "start_timestamp_seconds": 3.0}
    snapshot = build_snapshot([WINE], [with_metrics("a", "SVC", 1, keys)], [], {}, Limits())
    assert snapshot.experiments[0].latest_runs[0].metrics == (("accuracy_ratio", 0.9),)
    # start_timestamp_seconds would collide with mlflow_run_start_timestamp_seconds
    assert dict(snapshot.dropped) == {"unknown_metrics": 3}


def test_odd_names_become_safe_label_values() -> None:
    assert metric_label("") == "_"
    assert metric_label("précision@k") == "pr_cision_k"
    assert text_label('say "hi"\n\tnow\\') == 'say "hi" now\\'
    assert text_label("   ") == "(unnamed)"
    assert len(text_label("x" * 1000)) == 128


def test_time_stamped_run_names_collapse_into_one_series() -> None:
    runs = [
        run("a", "training-session-20250101-120000", 1, best_accuracy=0.9),
        run("b", "training-session-20250102-120000", 2, best_accuracy=0.97),
    ]
    snapshot = build_snapshot(
        [WINE], runs, [], {}, Limits(run_name_suffix=r"[-_ ]\d{8}[-_T ]?\d{6}$")
    )
    (latest,) = snapshot.experiments[0].latest_runs
    assert latest.run_name == "training-session"
    assert latest.metrics == (("best_accuracy_ratio", 0.97),)


def test_caps_bound_the_series_and_count_what_they_drop() -> None:
    experiments = [ExperimentRecord(str(i), f"exp-{i}") for i in range(5)]
    runs = [
        with_metrics(
            f"r{i}", f"name-{i}", i, {f"m{j}_seconds": j for j in range(10)}, experiment="0"
        )
        for i in range(30)
    ]
    models = [ModelRecord(f"model-{i}", {}, {}) for i in range(4)]
    limits = Limits(max_experiments=2, max_run_names=3, max_metrics=4, max_models=1)
    snapshot = build_snapshot(experiments, runs, models, {}, limits)
    assert [e.name for e in snapshot.experiments] == ["exp-0", "exp-1"]
    kept = snapshot.experiments[0].latest_runs
    assert [r.run_name for r in kept] == ["name-27", "name-28", "name-29"]  # the most recent
    assert all(len(r.metrics) == 4 for r in kept)
    assert len(snapshot.models) == 1
    assert dict(snapshot.dropped) == {
        "experiments": 3,
        "run_names": 27,
        "metrics": 3 * 6,
        "models": 3,
    }


def test_aliases_carry_version_run_and_that_runs_metrics() -> None:
    champion_run = run("r1", "SVC", 1, accuracy=0.98)
    model = ModelRecord(
        "wine-classifier",
        {"champion": "1", "challenger": "2"},
        {"1": "r1", "2": None},
        versions=3,
    )
    snapshot = build_snapshot([WINE], [champion_run], [model], {"r1": champion_run}, Limits())
    (facts,) = snapshot.models
    assert facts.versions == 3
    aliases = {a.alias: a for a in facts.aliases}
    assert aliases["champion"].version == "1"
    assert aliases["champion"].run_id == "r1"
    assert aliases["champion"].metrics == (("accuracy_ratio", 0.98),)
    assert aliases["challenger"].run_id == ""
    assert aliases["challenger"].metrics == ()
