"""Dashboard "Wine MLOps / Platform": is every part of the stack up and fresh?

Answers: which scrape targets are up; whether the MLflow tracking server reaches its stores
and how full its artifact volume is; its request rate, errors and latency (its own
``/metrics``); whether the exporter's MLflow snapshot is fresh; which
alerts fire now.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dashboard_builder

from grafana.dashboards_as_code.panels import (
    new_dashboard,
    query,
    stat_panel,
    table_panel,
    thresholds,
    time_series,
    value_map,
)

UID = "wine-platform"

MLFLOW = 'job="mlflow-server"'
EXPORTER = 'job="mlflow-exporter"'


def build() -> dashboard_builder.Dashboard:
    """Builds the platform dashboard."""
    board = new_dashboard(
        UID,
        "Wine MLOps / Platform",
        "Scrape targets, the MLflow server's traffic and latency, exporter freshness and "
        "firing alerts.",
        ["platform", "prometheus"],
    )

    board = board.with_row(dashboard_builder.Row("Targets and alerts"))
    board = board.with_panel(
        stat_panel(
            "Scrape targets",
            "Each target Prometheus scrapes: UP or DOWN (alert WineTargetDown after 1 minute).",
            query("up", "{{job}}"),
            mappings=value_map({"1": ("UP", "green"), "0": ("DOWN", "red")}),
            colors=thresholds((None, "red"), (1, "green")),
        )
        .span(12)
        .height(5)
    )
    board = board.with_panel(
        stat_panel(
            "Firing alerts",
            "Alerts firing now (0 in a healthy stack); the table below names them.",
            query('count(ALERTS{alertstate="firing"}) or vector(0)'),
            colors=thresholds((None, "green"), (1, "red")),
        )
        .span(4)
        .height(5)
    )
    board = board.with_panel(
        stat_panel(
            "MLflow reachable from the exporter",
            "Whether the exporter's last refresh reached MLflow (mlflow_up).",
            query(f"min(mlflow_up{{{EXPORTER}}})"),
            mappings=value_map({"1": ("YES", "green"), "0": ("NO", "red")}),
        )
        .span(4)
        .height(5)
    )
    board = board.with_panel(
        stat_panel(
            "Snapshot age",
            "Seconds since the exporter last read MLflow; alert above 120 s.",
            query(f"max(mlflow_exporter_snapshot_age_seconds{{{EXPORTER}}})"),
            unit="s",
            colors=thresholds((None, "green"), (60, "yellow"), (120, "red")),
        )
        .span(4)
        .height(5)
    )
    board = board.with_panel(
        table_panel(
            "Firing alerts (details)",
            "Every alert in the firing state with its labels; see the alert list in the "
            "README for what to do. Empty in a healthy stack.",
            query('ALERTS{alertstate="firing"}', instant=True),
        )
        .span(24)
        .height(6)
    )
    board = board.with_panel(
        time_series(
            "Targets up over time",
            "1 when the scrape succeeded; a dip is an outage or a restart.",
            query("up", "{{job}} ({{instance}})"),
            min_value=0,
            max_value=1,
        )
        .span(12)
        .height(7)
    )
    board = board.with_panel(
        time_series(
            "Scrape duration",
            "Seconds each scrape took (the exporter serves a cached snapshot: it stays fast).",
            query("scrape_duration_seconds", "{{job}}"),
            unit="s",
            min_value=0,
        )
        .span(12)
        .height(7)
    )

    board = board.with_row(dashboard_builder.Row("MLflow tracking server"))
    board = board.with_panel(
        stat_panel(
            "MLflow stores",
            "Whether mlflow-server reaches its tracking and auth databases and can write its "
            "artifact volume (alerts MlflowTrackingStoreDown, MlflowArtifactStoreUnavailable).",
            query(f"wine_mlflow_store_up{{{MLFLOW}}}", "{{store}}"),
            mappings=value_map({"1": ("UP", "green"), "0": ("DOWN", "red")}),
            colors=thresholds((None, "red"), (1, "green")),
        )
        .span(12)
        .height(5)
    )
    board = board.with_panel(
        stat_panel(
            "Artifact volume free",
            "Share of the artifact volume still free: training fails when it is full "
            "(alerts below 10% and 1%).",
            query(
                f"min(wine_mlflow_artifact_store_free_bytes{{{MLFLOW}}}"
                f" / wine_mlflow_artifact_store_size_bytes{{{MLFLOW}}})"
            ),
            unit="percentunit",
            colors=thresholds((None, "red"), (0.01, "orange"), (0.1, "green")),
        )
        .span(12)
        .height(5)
    )
    board = board.with_panel(
        time_series(
            "MLflow requests per second by status",
            "Requests to the MLflow server (training, exporter refreshes, API registry "
            "checks, UI) by HTTP status.",
            query(
                f"sum by (status) (rate(mlflow_http_request_total{{{MLFLOW}}}[$__rate_interval]))",
                "{{status}}",
            ),
            unit="reqps",
            min_value=0,
        )
        .span(12)
        .height(8)
    )
    board = board.with_panel(
        time_series(
            "MLflow latency p50 / p99",
            "Percentiles of the MLflow server's response time (all endpoints).",
            query(
                "histogram_quantile(0.5, sum by (le) (rate("
                f"mlflow_http_request_duration_seconds_bucket{{{MLFLOW}}}[$__rate_interval])))",
                "p50",
            ),
            query(
                "histogram_quantile(0.99, sum by (le) (rate("
                f"mlflow_http_request_duration_seconds_bucket{{{MLFLOW}}}[$__rate_interval])))",
                "p99",
                ref="B",
            ),
            unit="s",
            min_value=0,
        )
        .span(12)
        .height(8)
    )

    board = board.with_row(dashboard_builder.Row("MLflow exporter freshness"))
    board = board.with_panel(
        time_series(
            "Snapshot age and refresh duration",
            "Seconds since the last successful read of MLflow, and how long the last refresh took.",
            query(f"mlflow_exporter_snapshot_age_seconds{{{EXPORTER}}}", "snapshot age"),
            query(
                f"mlflow_exporter_refresh_duration_seconds{{{EXPORTER}}}",
                "refresh duration",
                ref="B",
            ),
            unit="s",
            min_value=0,
        )
        .span(12)
        .height(8)
    )
    board = board.with_panel(
        time_series(
            "Refreshes and errors",
            "Refreshes from MLflow per minute, and failed ones (the last snapshot stays "
            "served while MLflow is unreachable).",
            query(
                f"sum(rate(mlflow_exporter_refreshes_total{{{EXPORTER}}}[$__rate_interval])) * 60",
                "refreshes/min",
            ),
            query(
                "sum(rate(mlflow_exporter_refresh_errors_total"
                f"{{{EXPORTER}}}[$__rate_interval])) * 60",
                "errors/min",
                ref="B",
            ),
            min_value=0,
        )
        .span(12)
        .height(8)
    )
    return board
