"""Dashboard "Wine MLOps / Model health": is the served model still right in production?

Answers: the live accuracy of each model version on the labelled predictions (feedback),
against the promotion floor, and how many labels it rests on; how much feedback arrives,
correct and wrong; how far each feature's inputs have drifted from the training data (PSI,
with its 0.1 and 0.25 thresholds) and over how many rows; whether the prediction log keeps
up (rows written, rows dropped by reason); the retraining sessions the alerts started; the
state of the two alerts that start them (WineFeatureDrift, WineLiveAccuracyLow).
Source: the prediction API's monitor (``wine_api_live_*``, ``wine_api_feature_drift``,
``wine_api_drift_window_rows``), its prediction log (``wine_api_prediction_log_*``,
``wine_api_feedback_total``), the retraining webhook (``wine_retraining_*``), the exporter's
copy of the floor, and Prometheus's ``ALERTS`` (docs/monitoring.md).
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as common_builder
from grafana_foundation_sdk.builders import dashboard as dashboard_builder
from grafana_foundation_sdk.builders import timeseries
from grafana_foundation_sdk.models import common, dashboard

from grafana.dashboards_as_code.panels import (
    API,
    bad_above,
    bar_gauge,
    good_above,
    increase,
    new_dashboard,
    query,
    rate,
    stat_panel,
    table_panel,
    thresholds,
    time_series,
)
from wine_mlops.settings import DEFAULT_MIN_ACCURACY

UID = "wine-model-health"

WEBHOOK = 'job="model-training-webhook"'

#: The alerts of the monitoring loop, which Alertmanager sends to the retraining webhook.
LOOP_ALERTS = ("WineFeatureDrift", "WineLiveAccuracyLow")

#: PSI thresholds: below 0.1 stable, 0.1 to 0.25 moderate shift, above 0.25 major shift
#: (WineFeatureDrift fires above it).
PSI_MODERATE = 0.1
PSI_MAJOR = 0.25

#: The fewest labels and window rows the alerts act on (prometheus/rules/alerts.yml).
MIN_LABELS = 20
MIN_DRIFT_ROWS = 100

#: Every worker exports the same snapshot of the shared prediction log: one value per label.
LIVE_ACCURACY = f"max by (model_version) (wine_api_live_accuracy{{{API}}})"
LIVE_LABELLED = f"max by (model_version) (wine_api_live_labelled{{{API}}})"
SERVED = f"max by (model_version) (wine_api_model_info{{{API}}} == 1)"
FLOOR = "max(wine_champion_accuracy_floor_ratio)"
DRIFT = f"max by (feature) (wine_api_feature_drift{{{API}}})"


def alert_state(alertname: str) -> str:
    """0 when ``alertname`` is silent, 1 pending, 2 firing (any of its series)."""
    firing = f'max(ALERTS{{alertname="{alertname}", alertstate="firing"}}) * 2'
    pending = f'max(ALERTS{{alertname="{alertname}", alertstate="pending"}})'
    return f"{firing} or {pending} or vector(0)"


def _lines_at_thresholds(
    panel: timeseries.Panel, *steps: tuple[float | None, str]
) -> timeseries.Panel:
    """Draws the thresholds as dashed lines across a time series panel."""
    return panel.thresholds(thresholds(*steps)).thresholds_style(
        common_builder.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.DASHED)
    )


def build() -> dashboard_builder.Dashboard:
    """Builds the model-health dashboard."""
    live_quality = [
        _lines_at_thresholds(
            time_series(
                "Live accuracy by version",
                "Share of correct answers among the last labelled predictions "
                "(WINE_LIVE_ACCURACY_WINDOW, by when the label arrived) of each model "
                "version, and the promotion floor (WINE_MIN_ACCURACY) the exporter publishes. "
                f"WineLiveAccuracyLow fires when the served version stays below the floor for "
                f"10 minutes with at least {MIN_LABELS} labels.",
                query(LIVE_ACCURACY, "version {{model_version}}"),
                query(FLOOR, "promotion floor"),
                size=(12, 8),
                unit="percentunit",
                min_value=None,
                max_value=1,
            ),
            (None, "transparent"),
            (DEFAULT_MIN_ACCURACY, "red"),
        ),
        stat_panel(
            "Live accuracy of the served version",
            "Live accuracy of the version the API serves now. Red below the default "
            f"promotion floor ({DEFAULT_MIN_ACCURACY}).",
            query(f"{LIVE_ACCURACY} and on (model_version) {SERVED}", "version {{model_version}}"),
            size=(6, 8),
            unit="percentunit",
            colors=good_above(DEFAULT_MIN_ACCURACY, 0.95),
            text_mode=common.BigValueTextMode.VALUE_AND_NAME,
        ),
        stat_panel(
            "Labels behind the live accuracy",
            "How many labelled predictions each version's live accuracy rests on (at most "
            f"WINE_LIVE_ACCURACY_WINDOW). Below {MIN_LABELS} the accuracy alert does not act.",
            query(LIVE_LABELLED, "version {{model_version}}"),
            size=(6, 8),
            decimals=0,
            colors=thresholds((None, "orange"), (MIN_LABELS, "blue")),
            text_mode=common.BigValueTextMode.VALUE_AND_NAME,
        ),
        time_series(
            "Feedback per second, correct and wrong",
            "Labels recorded by POST /feedback (repeats not counted), by whether the "
            "prediction was correct.",
            query(rate("wine_api_feedback_total", API, by="outcome"), "{{outcome}}"),
            size=(16, 8),
            unit="ops",
        ),
        stat_panel(
            "Feedback in the time range",
            "Labels recorded in the dashboard's time range, correct and wrong.",
            query(increase("wine_api_feedback_total", API, by="outcome"), "{{outcome}}"),
            size=(8, 8),
            decimals=0,
            text_mode=common.BigValueTextMode.VALUE_AND_NAME,
        ),
    ]
    drift = [
        _lines_at_thresholds(
            time_series(
                "Drift by feature (PSI)",
                "Population stability index of each feature over the last logged inputs "
                "(WINE_DRIFT_WINDOW) against the served version's training distribution: below "
                f"{PSI_MODERATE} stable, {PSI_MODERATE} to {PSI_MAJOR} a moderate shift, above "
                f"{PSI_MAJOR} a major one (WineFeatureDrift after 10 minutes, with at least "
                f"{MIN_DRIFT_ROWS} rows).",
                query(DRIFT, "{{feature}}"),
                size=(16, 9),
            ),
            (None, "green"),
            (PSI_MODERATE, "yellow"),
            (PSI_MAJOR, "red"),
        ),
        bar_gauge(
            "Drift per feature now (PSI)",
            f"The latest PSI of each feature: yellow from {PSI_MODERATE}, red from {PSI_MAJOR}.",
            query(DRIFT, "{{feature}}"),
            size=(8, 9),
            max_value=0.5,
            colors=bad_above(PSI_MODERATE, PSI_MAJOR),
        ),
        stat_panel(
            "Drift window rows",
            "Logged inputs the drift figures rest on (at most WINE_DRIFT_WINDOW). Below "
            f"{MIN_DRIFT_ROWS} the drift alert does not act.",
            query(f"max(wine_api_drift_window_rows{{{API}}})"),
            size=(8, 5),
            decimals=0,
            colors=thresholds((None, "orange"), (MIN_DRIFT_ROWS, "blue")),
        ),
        stat_panel(
            "Monitoring snapshot age",
            "Time since the API's monitor last read the prediction log "
            "(every WINE_MONITORING_REFRESH_SECONDS); its failures are counted in "
            "wine_api_monitoring_refresh_failures_total and logged.",
            query(f"time() - max(wine_api_monitoring_last_refresh_timestamp_seconds{{{API}}})"),
            size=(8, 5),
            unit="s",
            colors=bad_above(60, 300),
        ),
        stat_panel(
            "Monitoring refresh failures in the time range",
            "Refreshes of the live figures that failed (the database could not be read).",
            query(increase("wine_api_monitoring_refresh_failures_total", API)),
            size=(8, 5),
            decimals=0,
            colors=thresholds((None, "green"), (1, "red")),
        ),
    ]
    prediction_log = [
        time_series(
            "Prediction log rows written and dropped per second",
            "Rows the API's writer threads inserted into the prediction log, and rows lost "
            "by reason: queue_full (the bounded queue overflowed) or db_error (the database "
            "was down or slow). A dropped row never reaches drift or feedback.",
            query(rate("wine_api_prediction_log_rows_total", API), "written"),
            query(
                rate("wine_api_prediction_log_dropped_total", API, by="reason"),
                "dropped: {{reason}}",
            ),
            size=(12, 8),
            unit="ops",
        ),
        stat_panel(
            "Rows dropped in the time range",
            "Predictions answered but not logged in the dashboard's time range, by reason.",
            query(
                increase("wine_api_prediction_log_dropped_total", API, by="reason"), "{{reason}}"
            ),
            size=(6, 8),
            decimals=0,
            colors=thresholds((None, "green"), (1, "red")),
            text_mode=common.BigValueTextMode.VALUE_AND_NAME,
        ),
        stat_panel(
            "Rows waiting to be written",
            "Rows queued in the workers' memory, not yet in the database (summed over them).",
            query(f"sum(wine_api_prediction_log_queued_rows{{{API}}})"),
            size=(6, 8),
            decimals=0,
        ),
    ]
    alerts_and_retraining = [
        stat_panel(
            "Retraining alerts",
            "State of the two alerts that start a retraining session: OK, PENDING (the "
            "condition holds, for less than 10 minutes) or FIRING (sent to the webhook).",
            *(query(alert_state(name), name) for name in LOOP_ALERTS),
            size=(8, 8),
            mappings=[
                dashboard.ValueMap(
                    options={
                        "0": dashboard.ValueMappingResult(text="OK", color="green", index=0),
                        "1": dashboard.ValueMappingResult(text="PENDING", color="yellow", index=1),
                        "2": dashboard.ValueMappingResult(text="FIRING", color="red", index=2),
                    }
                )
            ],
            text_mode=common.BigValueTextMode.VALUE_AND_NAME,
        ),
        stat_panel(
            "Last retraining session",
            "When model-training-webhook last started a training session (never: none since "
            "it started).",
            query(f"max(wine_retraining_last_session_timestamp_seconds{{{WEBHOOK}}}) * 1000"),
            size=(6, 8),
            unit="dateTimeFromNow",
            mappings=[
                dashboard.ValueMap(
                    options={"0": dashboard.ValueMappingResult(text="never", index=0)}
                )
            ],
        ),
        bar_gauge(
            "Retraining alerts received in the time range",
            "What became of each alert the webhook received: started (a session began), busy "
            "(one was running), cooldown (too soon after the last start, "
            "WINE_RETRAIN_COOLDOWN_SECONDS); and how the sessions ended: succeeded or failed. "
            "The promotion gate decides, in the session, whether the new model is promoted.",
            query(
                increase("wine_retraining_sessions_total", WEBHOOK, by="alertname, result"),
                "{{alertname}} {{result}}",
            ),
            size=(10, 8),
        ),
        time_series(
            "Retraining sessions over time",
            "Alerts the webhook received and sessions ended, by alert and result, in each "
            "interval of the graph.",
            query(
                "sum by (alertname, result) "
                f"(increase(wine_retraining_sessions_total{{{WEBHOOK}}}[$__rate_interval]))",
                "{{alertname}} {{result}}",
            ),
            size=(14, 8),
        ),
        table_panel(
            "Retraining alerts (details)",
            "The pending and firing series of the two alerts, with their labels: the drifted "
            "feature, or the model version whose live accuracy is low. Empty while they are "
            "silent.",
            query(f'ALERTS{{alertname=~"{"|".join(LOOP_ALERTS)}"}}', instant=True),
            size=(10, 8),
        ),
    ]
    return new_dashboard(
        UID,
        "Wine MLOps / Model health",
        "Live accuracy from the feedback, input drift (PSI), the prediction log, and the "
        "retraining sessions the monitoring alerts start (docs/monitoring.md).",
        ["model-health", "monitoring"],
        rows={
            "Live quality of the served model": live_quality,
            "Input drift": drift,
            "Prediction log": prediction_log,
            "Alerts and retraining": alerts_and_retraining,
        },
    )
