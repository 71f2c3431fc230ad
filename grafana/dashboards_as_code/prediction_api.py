"""Dashboard "Wine MLOps / Prediction API": is the API serving well, and what does it see?

Answers: requests per second by status; error ratios (5xx, 4xx); p50/p90/p99 latency and the
share of requests answered within 100 ms (the prediction API's own histogram, not
Prometheus's handlers); predictions per cultivar; which model version is served, its loads
and reloads; inputs outside the training range, per feature.
Source: the prediction API's ``/metrics`` (``wine_api_*``) and the recording rules
``job:wine_api_*`` of ``prometheus/rules/recording.yml``. Scrapes and probes are excluded.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dashboard_builder
from grafana_foundation_sdk.models import common

from grafana.dashboards_as_code.panels import (
    API,
    API_TRAFFIC,
    bad_above,
    bar_gauge,
    good_above,
    increase,
    new_dashboard,
    pie,
    quantile,
    query,
    rate,
    stat_panel,
    thresholds,
    time_series,
    yes_no,
)

UID = "wine-prediction-api"

#: The versions each API worker serves (one series per worker, ``pid`` label; a version a
#: worker served before stays at 0).
WORKER_MODEL_INFO = f'wine_api_model_info{{{API}, model_version!=""}} == 1'
#: The served model's metadata, one series per API instance and version its workers serve.
MODEL_INFO = f"max without (pid) ({WORKER_MODEL_INFO})"


def build() -> dashboard_builder.Dashboard:
    """Builds the prediction-API dashboard."""
    now = [
        stat_panel(
            "Served model",
            "Name, version and alias of the model each API instance serves (GET /model).",
            query(MODEL_INFO, "{{model_name}} v{{model_version}} @{{alias}}"),
            size=(6, 4),
            text_mode=common.BigValueTextMode.NAME,
        ),
        stat_panel(
            "Model loaded",
            "Whether every API worker has a model loaded (GET /readyz answers 200). NO "
            "MODEL: a worker has none and its predictions fail with 503 (alert "
            "WineApiNoModelServed).",
            query(f"min(wine_api_model_loaded{{{API}}})"),
            size=(4, 4),
            mappings=yes_no("READY", "NO MODEL"),
        ),
        stat_panel(
            "Requests/s",
            "User requests per second over 5 minutes (recording rule).",
            query("sum(job:wine_api_requests:rate5m)"),
            size=(4, 4),
            unit="reqps",
        ),
        stat_panel(
            "Server errors",
            "Share of requests answered 5xx over 5 minutes; the alert fires above 5%.",
            query("max(job:wine_api_request_errors:ratio_rate5m)"),
            size=(3, 4),
            unit="percentunit",
            colors=bad_above(0.01, 0.05),
        ),
        stat_panel(
            "p99 latency",
            "99th percentile of the response time over 5 minutes; the alert fires above 0.5 s.",
            query("max(job:wine_api_request_duration_seconds:p99_5m)"),
            size=(3, 4),
            unit="s",
            colors=bad_above(0.1, 0.5),
        ),
        stat_panel(
            "Under 100 ms",
            "Share of requests answered within 100 ms over 5 minutes.",
            query("min(job:wine_api_requests_under_100ms:ratio_rate5m)"),
            size=(4, 4),
            unit="percentunit",
            colors=good_above(0.95, 0.99),
        ),
    ]
    traffic_and_errors = [
        time_series(
            "Requests per second by status",
            "User requests per second by HTTP status (scrapes and probes excluded).",
            query(rate("wine_api_requests_total", API_TRAFFIC, by="status"), "{{status}}"),
            size=(12, 8),
            unit="reqps",
        ),
        time_series(
            "Requests per second by route",
            "User requests per second by route template and method.",
            query(
                rate("wine_api_requests_total", API_TRAFFIC, by="route, method"),
                "{{method}} {{route}}",
            ),
            size=(12, 8),
            unit="reqps",
        ),
        time_series(
            "Error ratio",
            "Share of requests answered with a server error (5xx: alert above 5%) or "
            "rejected as invalid (4xx: alert above 25%), over 5 minutes.",
            query("job:wine_api_request_errors:ratio_rate5m", "server errors (5xx)"),
            query("job:wine_api_request_client_errors:ratio_rate5m", "client errors (4xx)"),
            size=(12, 8),
            unit="percentunit",
        ),
        time_series(
            "Requests in progress",
            "Requests the API is answering at the moment of each scrape (scrapes of /metrics "
            "not counted): a queue building up shows here before it shows in the latency.",
            query(f"sum by (instance) (wine_api_requests_in_progress{{{API}}})", "{{instance}}"),
            size=(12, 8),
        ),
    ]
    latency = [
        time_series(
            "Latency p50 / p90 / p99",
            "Percentiles of the API's response time over 5 minutes (recording rules), "
            "from its own histogram.",
            *(
                query(f"job:wine_api_request_duration_seconds:{name}_5m", name)
                for name in ("p50", "p90", "p99")
            ),
            size=(12, 8),
            unit="s",
        ),
        time_series(
            "Share of requests under 100 ms",
            "Requests answered within 100 ms divided by all requests, over 5 minutes.",
            query("job:wine_api_requests_under_100ms:ratio_rate5m", "under 100 ms"),
            size=(12, 8),
            unit="percentunit",
            min_value=None,
            max_value=1,
        ),
        time_series(
            "p99 latency by route",
            "99th percentile of the response time of each route.",
            query(
                quantile(0.99, "wine_api_request_duration_seconds_bucket", API_TRAFFIC, by="route"),
                "{{route}}",
            ),
            size=(24, 8),
            unit="s",
        ),
    ]
    predictions_and_model = [
        time_series(
            "Predictions per cultivar",
            "Wines classified per second, by predicted cultivar.",
            query(rate("wine_api_predictions_total", API, by="class_name"), "{{class_name}}"),
            size=(12, 8),
        ),
        pie(
            "Cultivars predicted in the time range",
            "Share of each predicted cultivar over the dashboard's time range.",
            query(
                increase("wine_api_predictions_total", API, by="class_name"),
                "{{class_name}}",
                instant=True,
            ),
            size=(6, 8),
        ),
        bar_gauge(
            "Model loads in the time range",
            "Initial loads and hot swaps (reload) of the served model, by result; a failure "
            "leaves the previous model serving.",
            query(
                increase("wine_api_model_loads_total", API, by="kind, result"),
                "{{kind}} {{result}}",
                instant=True,
            ),
            size=(6, 8),
        ),
        time_series(
            "Served model version",
            "API workers serving each model version: when the champion moves, the old "
            "version's line drops and the new one's rises (each worker reloads).",
            query(
                f"count by (model_name, model_version) ({WORKER_MODEL_INFO})",
                "{{model_name}} v{{model_version}}",
            ),
            size=(12, 8),
        ),
        time_series(
            "Registry check failures and last load",
            "Failed look-ups of the served alias in MLflow (per second), and seconds since "
            "the last successful model load.",
            query(rate("wine_api_registry_check_failures_total", API), "registry check failures/s"),
            query(
                f"time() - max(wine_api_model_last_load_timestamp_seconds{{{API}}} > 0)",
                "seconds since last load",
            ),
            size=(12, 8),
        ),
    ]
    out_of_range = [
        bar_gauge(
            "Out-of-range values per feature in the time range",
            "Input values below or above the range the served version was trained on (each "
            "one a warning in the answer), per feature, over the dashboard's time range "
            "(alert WineApiInputsOutOfTrainingRange).",
            query(
                increase("wine_api_input_out_of_range_total", API, by="feature, side"),
                "{{feature}} ({{side}})",
                instant=True,
            ),
            size=(12, 12),
            colors=thresholds((None, "green"), (1, "orange")),
        ),
        time_series(
            "Out-of-range values per classified wine",
            "Out-of-range input values per wine classified, by feature; the alert fires "
            "when the total stays above 0.25 for 5 minutes.",
            query(
                rate("wine_api_input_out_of_range_total", API, by="feature")
                + f" / scalar({rate('wine_api_predictions_total', API)})",
                "{{feature}}",
            ),
            size=(12, 12),
        ),
    ]
    return new_dashboard(
        UID,
        "Wine MLOps / Prediction API",
        "Traffic, errors, latency, predictions and the served model of the prediction API.",
        ["prediction-api"],
        rows={
            "Now": now,
            "Traffic and errors": traffic_and_errors,
            "Latency": latency,
            "Predictions and model": predictions_and_model,
            "Inputs outside the training range": out_of_range,
        },
    )
