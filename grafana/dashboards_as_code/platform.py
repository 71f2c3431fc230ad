"""Dashboard "Wine MLOps / Platform": is every part of the stack up and fresh?

Answers: which scrape targets are up; whether the MLflow tracking server reaches its stores
and how full its artifact volume is; its request rate, errors and latency (its own
``/metrics``); whether the exporter's MLflow snapshot is fresh; which
alerts fire now.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dashboard_builder

from grafana.dashboards_as_code.panels import (
    bad_above,
    new_dashboard,
    quantile,
    query,
    rate,
    stat_panel,
    table_panel,
    thresholds,
    time_series,
    yes_no,
)

UID = "wine-platform"

MLFLOW = 'job="mlflow-server"'
EXPORTER = 'job="mlflow-exporter"'
#: When the exporter last read MLflow (0 before its first success): its age is time() - it.
LAST_SUCCESS = "wine_exporter_last_refresh_success_timestamp_seconds"

#: Colours of a 0/1 "up" gauge: red unless 1.
UP = thresholds((None, "red"), (1, "green"))


def build() -> dashboard_builder.Dashboard:
    """Builds the platform dashboard."""
    targets_and_alerts = [
        stat_panel(
            "Scrape targets",
            "Each target Prometheus scrapes: UP or DOWN (alert WineTargetDown after 1 minute).",
            query("up", "{{job}}"),
            size=(12, 5),
            mappings=yes_no("UP", "DOWN"),
            colors=UP,
        ),
        stat_panel(
            "Firing alerts",
            "Alerts firing now (0 in a healthy stack); the table below names them.",
            query('count(ALERTS{alertstate="firing"}) or vector(0)'),
            size=(4, 5),
            colors=thresholds((None, "green"), (1, "red")),
        ),
        stat_panel(
            "MLflow reachable from the exporter",
            "Whether the exporter's last refresh reached MLflow (mlflow_up).",
            query(f"min(mlflow_up{{{EXPORTER}}})"),
            size=(4, 5),
            mappings=yes_no("YES", "NO"),
        ),
        stat_panel(
            "Snapshot age",
            "Seconds since the exporter last read MLflow; alert above 120 s.",
            query(f"time() - max({LAST_SUCCESS}{{{EXPORTER}}})"),
            size=(4, 5),
            unit="s",
            colors=bad_above(60, 120),
        ),
        table_panel(
            "Firing alerts (details)",
            "Every alert in the firing state with its labels; see the alert list in the "
            "README for what to do. Empty in a healthy stack.",
            query('ALERTS{alertstate="firing"}', instant=True),
            size=(24, 6),
        ),
        time_series(
            "Targets up over time",
            "1 when the scrape succeeded; a dip is an outage or a restart.",
            query("up", "{{job}} ({{instance}})"),
            size=(12, 7),
            max_value=1,
        ),
        time_series(
            "Scrape duration",
            "Seconds each scrape took (the exporter serves a cached snapshot: it stays fast).",
            query("scrape_duration_seconds", "{{job}}"),
            size=(12, 7),
            unit="s",
        ),
    ]
    mlflow_server = [
        stat_panel(
            "MLflow stores",
            "Whether mlflow-server reaches its tracking and auth databases and can write its "
            "artifact volume (alerts MlflowTrackingStoreDown, MlflowArtifactStoreUnavailable).",
            query(f"wine_mlflow_store_up{{{MLFLOW}}}", "{{store}}"),
            size=(12, 5),
            mappings=yes_no("UP", "DOWN"),
            colors=UP,
        ),
        stat_panel(
            "Artifact volume free",
            "Share of the artifact volume still free: training fails when it is full "
            "(alerts below 10% and 1%).",
            query(
                f"min(wine_mlflow_artifact_store_free_bytes{{{MLFLOW}}}"
                f" / wine_mlflow_artifact_store_size_bytes{{{MLFLOW}}})"
            ),
            size=(12, 5),
            unit="percentunit",
            colors=thresholds((None, "red"), (0.01, "orange"), (0.1, "green")),
        ),
        time_series(
            "MLflow requests per second by status",
            "Requests to the MLflow server (training, exporter refreshes, API registry "
            "checks, UI) by HTTP status.",
            query(rate("mlflow_http_request_total", MLFLOW, by="status"), "{{status}}"),
            size=(12, 8),
            unit="reqps",
        ),
        time_series(
            "MLflow latency p50 / p99",
            "Percentiles of the MLflow server's response time (all endpoints).",
            *(
                query(quantile(q, "mlflow_http_request_duration_seconds_bucket", MLFLOW), name)
                for q, name in ((0.5, "p50"), (0.99, "p99"))
            ),
            size=(12, 8),
            unit="s",
        ),
    ]
    exporter_freshness = [
        time_series(
            "Snapshot age and refresh duration",
            "Seconds since the last successful read of MLflow, and how long the last refresh took.",
            query(f"time() - {LAST_SUCCESS}{{{EXPORTER}}}", "snapshot age"),
            query(f"wine_exporter_last_refresh_duration_seconds{{{EXPORTER}}}", "refresh duration"),
            size=(12, 8),
            unit="s",
        ),
        time_series(
            "Refreshes and errors",
            "Refreshes from MLflow per minute, and failed ones (the last snapshot stays "
            "served while MLflow is unreachable).",
            query(f"{rate('wine_exporter_refreshes_total', EXPORTER)} * 60", "refreshes/min"),
            query(f"{rate('wine_exporter_refresh_errors_total', EXPORTER)} * 60", "errors/min"),
            size=(12, 8),
        ),
    ]
    return new_dashboard(
        UID,
        "Wine MLOps / Platform",
        "Scrape targets, the MLflow server's traffic and latency, exporter freshness and "
        "firing alerts.",
        ["platform", "prometheus"],
        rows={
            "Targets and alerts": targets_and_alerts,
            "MLflow tracking server": mlflow_server,
            "MLflow exporter freshness": exporter_freshness,
        },
    )
