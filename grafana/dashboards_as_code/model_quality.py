"""Dashboard "Wine MLOps / Model quality": how good are the models, and which one is served?

Answers: per model family, the test accuracy, precision, recall and F1 (macro) of its latest
finished run and how they evolved; which registry version is ``champion`` and
``challenger`` and how good the champion is; how many runs each experiment holds.
Source: the mlflow-exporter (``mlflow_run_*``, ``mlflow_model_*``, ``mlflow_experiment_runs``).
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dashboard_builder
from grafana_foundation_sdk.models import common, dashboard

from grafana.dashboards_as_code.panels import (
    DATASOURCE,
    bar_gauge,
    new_dashboard,
    query,
    stat_panel,
    table_panel,
    thresholds,
    time_series,
)

UID = "wine-model-quality"

#: Test metrics the training job logs for every model family, with their titles.
QUALITY_METRICS = (
    ("accuracy", "Test accuracy"),
    ("precision_macro", "Precision (macro)"),
    ("recall_macro", "Recall (macro)"),
    ("f1_macro", "F1 (macro)"),
)

#: The accuracy floor of the WineChampionAccuracyBelowFloor alert (prometheus/rules).
ACCURACY_FLOOR = 0.9

RUN = 'mlflow_run_metric{experiment=~"$experiment", metric="%s"}'


def build() -> dashboard_builder.Dashboard:
    """Builds the model-quality dashboard."""
    quality_colors = thresholds((None, "red"), (ACCURACY_FLOOR, "yellow"), (0.95, "green"))
    board = new_dashboard(
        UID,
        "Wine MLOps / Model quality",
        "Test metrics of the latest run of each model family, the registry's champion and "
        "challenger, and runs per experiment (from the mlflow-exporter).",
        ["mlflow", "model-quality"],
    ).with_variable(
        dashboard_builder.QueryVariable("experiment")
        .label("Experiment")
        .description("MLflow experiments to show")
        .datasource(DATASOURCE)
        .query("label_values(mlflow_run_metric, experiment)")
        .refresh(dashboard.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(dashboard.VariableOption(selected=True, text="All", value="$__all"))
    )

    board = board.with_row(dashboard_builder.Row("Registry: what is served"))
    board = board.with_panel(
        stat_panel(
            "Version per alias",
            "The registered-model version each alias points to: `champion` is served by the "
            "prediction API; `challenger` is the last candidate that did not beat it.",
            query("mlflow_model_alias_version", "{{model}} @{{alias}}"),
            decimals=0,
            text_mode=common.BigValueTextMode.VALUE_AND_NAME,
        )
        .span(8)
        .height(5)
    )
    board = board.with_panel(
        stat_panel(
            "Champion test metrics",
            "Test metrics of the run behind the champion version. Red below the accuracy "
            f"floor ({ACCURACY_FLOOR}) of the WineChampionAccuracyBelowFloor alert.",
            query(
                'mlflow_model_alias_metric{alias="champion", '
                'metric=~"accuracy|precision_macro|recall_macro|f1_macro"}',
                "{{metric}}",
            ),
            unit="percentunit",
            colors=quality_colors,
            text_mode=common.BigValueTextMode.VALUE_AND_NAME,
        )
        .span(10)
        .height(5)
    )
    board = board.with_panel(
        stat_panel(
            "Registered versions",
            "Versions registered for each model (the newest version's number).",
            query("mlflow_model_versions", "{{model}}"),
            decimals=0,
            text_mode=common.BigValueTextMode.VALUE_AND_NAME,
        )
        .span(6)
        .height(5)
    )
    board = board.with_panel(
        table_panel(
            "Aliases",
            "Each alias with its version and the MLflow run id behind it (open the run in "
            "the MLflow UI to compare it).",
            query("mlflow_model_alias_info", instant=True),
        )
        .span(24)
        .height(5)
    )

    board = board.with_row(dashboard_builder.Row("Latest run of each model family"))
    for metric, title in QUALITY_METRICS:
        board = board.with_panel(
            bar_gauge(
                title,
                f"`{metric}` on the test set of the latest finished run of each model family.",
                query(RUN % metric, "{{run_name}}"),
                unit="percentunit",
                max_value=1,
                colors=quality_colors,
            )
            .span(6)
            .height(8)
        )

    board = board.with_row(dashboard_builder.Row("Evolution over time"))
    for metric, title in QUALITY_METRICS[::3]:  # accuracy and F1
        board = board.with_panel(
            time_series(
                f"{title} over time",
                f"`{metric}` of the latest run of each model family: a step is a new run.",
                query(RUN % metric, "{{run_name}}"),
                unit="percentunit",
                max_value=1,
            )
            .span(12)
            .height(8)
        )
    board = board.with_panel(
        time_series(
            "Champion accuracy over time",
            "Test accuracy of the champion; a step is a promotion.",
            query(
                'mlflow_model_alias_metric{alias="champion", metric="accuracy"}',
                "{{model}} champion",
            ),
            unit="percentunit",
            max_value=1,
        )
        .span(12)
        .height(8)
    )

    board = board.with_row(dashboard_builder.Row("Experiments"))
    board = board.with_panel(
        bar_gauge(
            "Runs per experiment",
            "Active runs of each experiment (parent and nested runs), all statuses, among the "
            "newest the exporter reads (EXPORTER_RUNS_PER_EXPERIMENT, 200): an experiment "
            "showing 200 holds at least that many.",
            query(
                'sum by (experiment) (mlflow_experiment_runs{experiment=~"$experiment"})',
                "{{experiment}}",
            ),
        )
        .span(12)
        .height(8)
    )
    board = board.with_panel(
        time_series(
            "Runs by status",
            "Runs of each experiment by status (FINISHED, FAILED, RUNNING, KILLED) among its "
            "newest runs (EXPORTER_RUNS_PER_EXPERIMENT, 200; all of them in a smaller experiment).",
            query('mlflow_experiment_runs{experiment=~"$experiment"}', "{{experiment}} {{status}}"),
            min_value=0,
        )
        .span(12)
        .height(8)
    )
    board = board.with_panel(
        table_panel(
            "Time since the latest run of each family",
            "How long ago the latest finished run of each model family started.",
            query(
                'time() - mlflow_run_start_timestamp_seconds{experiment=~"$experiment"}',
                instant=True,
            ),
        )
        .unit("s")
        .span(24)
        .height(6)
    )
    return board
