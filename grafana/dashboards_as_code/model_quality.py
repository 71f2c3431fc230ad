"""Dashboard "Wine MLOps / Model quality": how good are the models, and which one is served?

Answers: per model family, the test accuracy, precision, recall and F1 (macro) of its latest
finished run and how they evolved; which registry version is ``champion`` and
``challenger`` and how good the champion is; how many runs each experiment holds.
Source: the mlflow-exporter (``mlflow_run_*``, ``mlflow_model_*``, ``mlflow_experiment_runs``);
each MLflow metric key is a metric name with its unit: ``accuracy`` → ``mlflow_run_accuracy_ratio``.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dashboard_builder
from grafana_foundation_sdk.models import common, dashboard

from grafana.dashboards_as_code.panels import (
    DATASOURCE,
    bar_gauge,
    good_above,
    new_dashboard,
    query,
    stat_panel,
    table_panel,
    time_series,
)
from wine_mlops.settings import DEFAULT_MIN_ACCURACY

UID = "wine-model-quality"

#: Test metrics the training job logs for every model family, with their titles.
QUALITY_METRICS = (
    ("accuracy", "Test accuracy"),
    ("precision_macro", "Precision (macro)"),
    ("recall_macro", "Recall (macro)"),
    ("f1_macro", "F1 (macro)"),
)

#: The promotion floor (WINE_MIN_ACCURACY's default), which the exporter publishes for the
#: WineChampionAccuracyBelowFloor alert: panel colours turn at it.
ACCURACY_FLOOR = DEFAULT_MIN_ACCURACY

#: Selector of the experiments chosen in the dashboard's ``experiment`` variable.
EXPERIMENT = 'experiment=~"$experiment"'

#: Runs per experiment and status (among the newest the exporter reads).
EXPERIMENT_RUNS = f"mlflow_experiment_runs{{{EXPERIMENT}}}"


def run_metric(metric: str) -> str:
    """A test metric (a ratio) of the latest finished run of each model family."""
    return f"mlflow_run_{metric}_ratio{{{EXPERIMENT}}}"


def champion_metric(metric: str) -> str:
    """A test metric (a ratio) of the run behind the champion version."""
    return f'mlflow_model_alias_{metric}_ratio{{alias="champion"}}'


def build() -> dashboard_builder.Dashboard:
    """Builds the model-quality dashboard."""
    quality_colors = good_above(ACCURACY_FLOOR, 0.95)
    registry = [
        stat_panel(
            "Version per alias",
            "The registered-model version each alias points to: `champion` is served by the "
            "prediction API; `challenger` is the last candidate that did not beat it.",
            query("mlflow_model_alias_version", "{{model}} @{{alias}}"),
            size=(8, 5),
            decimals=0,
            text_mode=common.BigValueTextMode.VALUE_AND_NAME,
        ),
        stat_panel(
            "Champion test metrics",
            "Test metrics of the run behind the champion version. Red below the accuracy "
            f"floor ({ACCURACY_FLOOR}) of the WineChampionAccuracyBelowFloor alert.",
            *(query(champion_metric(metric), metric) for metric, _ in QUALITY_METRICS),
            size=(10, 5),
            unit="percentunit",
            colors=quality_colors,
            text_mode=common.BigValueTextMode.VALUE_AND_NAME,
        ),
        stat_panel(
            "Registered versions",
            "Versions registered for each model (the newest version's number).",
            query("mlflow_model_versions", "{{model}}"),
            size=(6, 5),
            decimals=0,
            text_mode=common.BigValueTextMode.VALUE_AND_NAME,
        ),
        table_panel(
            "Aliases",
            "Each alias with its version and the MLflow run id behind it (open the run in "
            "the MLflow UI to compare it).",
            query("mlflow_model_alias_info", instant=True),
            size=(24, 5),
        ),
    ]
    latest_runs = [
        bar_gauge(
            title,
            f"`{metric}` on the test set of the latest finished run of each model family.",
            query(run_metric(metric), "{{run_name}}"),
            size=(6, 8),
            unit="percentunit",
            max_value=1,
            colors=quality_colors,
        )
        for metric, title in QUALITY_METRICS
    ]
    evolution = [
        *(
            time_series(
                f"{title} over time",
                f"`{metric}` of the latest run of each model family: a step is a new run.",
                query(run_metric(metric), "{{run_name}}"),
                size=(12, 8),
                unit="percentunit",
                min_value=None,
                max_value=1,
            )
            for metric, title in QUALITY_METRICS[::3]  # accuracy and F1
        ),
        time_series(
            "Champion accuracy over time",
            "Test accuracy of the champion; a step is a promotion.",
            query(champion_metric("accuracy"), "{{model}} champion"),
            size=(12, 8),
            unit="percentunit",
            min_value=None,
            max_value=1,
        ),
    ]
    experiments = [
        bar_gauge(
            "Runs per experiment",
            "Active runs of each experiment (parent and nested runs), all statuses, among the "
            "newest the exporter reads (EXPORTER_RUNS_PER_EXPERIMENT, 200): an experiment "
            "showing 200 holds at least that many.",
            query(f"sum by (experiment) ({EXPERIMENT_RUNS})", "{{experiment}}"),
            size=(12, 8),
        ),
        time_series(
            "Runs by status",
            "Runs of each experiment by status (FINISHED, FAILED, RUNNING, KILLED) among its "
            "newest runs (EXPORTER_RUNS_PER_EXPERIMENT, 200; all of them in a smaller experiment).",
            query(EXPERIMENT_RUNS, "{{experiment}} {{status}}"),
            size=(12, 8),
        ),
        table_panel(
            "Time since the latest run of each family",
            "How long ago the latest finished run of each model family started.",
            query(f"time() - mlflow_run_start_timestamp_seconds{{{EXPERIMENT}}}", instant=True),
            size=(24, 6),
            unit="s",
        ),
    ]
    return new_dashboard(
        UID,
        "Wine MLOps / Model quality",
        "Test metrics of the latest run of each model family, the registry's champion and "
        "challenger, and runs per experiment (from the mlflow-exporter).",
        ["mlflow", "model-quality"],
        rows={
            "Registry: what is served": registry,
            "Latest run of each model family": latest_runs,
            "Evolution over time": evolution,
            "Experiments": experiments,
        },
        variables=[
            dashboard_builder.QueryVariable("experiment")
            .label("Experiment")
            .description("MLflow experiments to show")
            .datasource(DATASOURCE)
            .query("label_values(mlflow_run_start_timestamp_seconds, experiment)")
            .refresh(dashboard.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .multi(True)
            .include_all(True)
            .all_value(".*")
            .current(dashboard.VariableOption(selected=True, text="All", value="$__all"))
        ],
    )
