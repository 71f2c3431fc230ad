"""The collectors render a snapshot: right values, valid exposition, no MLflow involved."""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, generate_latest

from mlflow_exporter.collectors import build_registry
from mlflow_exporter.refresher import ExporterState
from mlflow_exporter.snapshot import Snapshot
from tests.mlflow_exporter.conftest import Clock
from tests.mlflow_exporter.support import promtool_check, samples


def registry_for(state: ExporterState, clock: Clock) -> CollectorRegistry:
    return build_registry(lambda: state)


def test_runs_are_rendered_one_metric_name_per_key_with_its_unit(
    snapshot: Snapshot, clock: Clock
) -> None:
    state = ExporterState(snapshot=snapshot, up=True, last_success=clock.now, refreshes=1)
    registry = registry_for(state, clock)
    wine = {"experiment": "wine-classifier"}
    forest = {**wine, "run_name": "RandomForestClassifier"}
    assert registry.get_sample_value("mlflow_run_accuracy_ratio", forest) == 0.97
    assert registry.get_sample_value("mlflow_run_start_timestamp_seconds", forest) == 1_699_999_000
    odd = {**wine, "run_name": 'odd "name" \\ é'}
    assert math.isnan(registry.get_sample_value("mlflow_run_log_loss", odd) or 0.0)
    text = generate_latest(registry).decode()
    assert "# HELP mlflow_run_accuracy_ratio MLflow metric 'accuracy' of the latest" in text
    assert "(a ratio from 0 to 1)" in text
    assert registry.get_sample_value("mlflow_experiment_runs", {**wine, "status": "FAILED"}) == 2
    assert (
        registry.get_sample_value(
            "mlflow_experiment_runs", {"experiment": "empty", "status": "RUNNING"}
        )
        == 0
    )


def test_registry_aliases_versions_and_champion_metrics(snapshot: Snapshot, clock: Clock) -> None:
    registry = registry_for(ExporterState(snapshot=snapshot, up=True), clock)
    model = {"model": "wine-classifier"}
    info = {**model, "alias": "champion", "version": "4", "run_id": "run4"}
    assert registry.get_sample_value("mlflow_model_alias_info", info) == 1
    assert (
        registry.get_sample_value("mlflow_model_alias_version", {**model, "alias": "champion"}) == 4
    )
    champion = {**model, "alias": "champion"}
    assert registry.get_sample_value("mlflow_model_alias_accuracy_ratio", champion) == 0.98
    assert registry.get_sample_value("mlflow_model_alias_f1_macro_ratio", champion) == 0.97
    challenger = {**model, "alias": "challenger"}
    assert registry.get_sample_value("mlflow_model_alias_f1_macro_ratio", challenger) is None
    assert registry.get_sample_value("mlflow_model_versions", model) == 6


def test_exporter_reports_its_own_state_and_when_the_snapshot_was_read(
    snapshot: Snapshot, clock: Clock
) -> None:
    state = ExporterState(
        snapshot=snapshot,
        up=False,
        last_success=clock.now - 30,
        last_duration=0.25,
        refreshes=10,
        errors=3,
    )
    registry = registry_for(state, clock)
    assert registry.get_sample_value("mlflow_up") == 0
    success = "wine_exporter_last_refresh_success_timestamp_seconds"
    assert registry.get_sample_value(success) == clock.now - 30
    clock.now += 15  # a timestamp does not move with the clock: PromQL computes the age
    assert registry.get_sample_value(success) == clock.now - 45
    assert registry.get_sample_value("wine_exporter_refreshes_total") == 10
    assert registry.get_sample_value("wine_exporter_refresh_errors_total") == 3
    assert registry.get_sample_value("wine_exporter_last_refresh_duration_seconds") == 0.25
    assert registry.get_sample_value("wine_exporter_last_refresh_requests") == 4
    assert registry.get_sample_value("wine_exporter_last_refresh_runs") == 15
    assert registry.get_sample_value("wine_exporter_dropped_items", {"kind": "run_names"}) == 2
    assert registry.get_sample_value("wine_exporter_dropped_items", {"kind": "models"}) == 0
    unknown = {"kind": "unknown_metrics"}
    assert registry.get_sample_value("wine_exporter_dropped_items", unknown) == 0
    # the last snapshot is still served while MLflow is unreachable
    forest = {"experiment": "wine-classifier", "run_name": "RandomForestClassifier"}
    assert registry.get_sample_value("mlflow_run_accuracy_ratio", forest) == 0.97


def test_before_the_first_refresh_only_the_exporter_metrics_show(clock: Clock) -> None:
    registry = registry_for(ExporterState(), clock)
    text = generate_latest(registry).decode()
    assert registry.get_sample_value("mlflow_up") == 0
    assert registry.get_sample_value("wine_exporter_last_refresh_success_timestamp_seconds") == 0
    assert "mlflow_run_" not in text
    assert "mlflow_model_" not in text
    assert promtool_check(text) == ""


def test_exposition_is_valid_with_help_and_type_and_no_duplicates(
    snapshot: Snapshot, clock: Clock
) -> None:
    state = ExporterState(snapshot=snapshot, up=True, last_success=clock.now, refreshes=1)
    text = generate_latest(registry_for(state, clock)).decode()
    for name in (
        "mlflow_run_accuracy_ratio",
        "mlflow_run_log_loss",
        "mlflow_experiment_runs",
        "mlflow_model_alias_info",
        "mlflow_model_alias_accuracy_ratio",
        "mlflow_up",
        "wine_exporter_refresh_errors_total",
    ):
        assert f"# HELP {name} " in text
        assert f"# TYPE {name} " in text
    assert samples(text)  # parses, and no series appears twice
    assert "_created" not in text
    assert promtool_check(text) == ""


def test_registering_the_collectors_does_not_read_the_state() -> None:
    def never() -> ExporterState:
        raise AssertionError("the state was read while registering")

    registry = build_registry(never)
    assert registry is not None
