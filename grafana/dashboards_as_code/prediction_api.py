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
    API_TRAFFIC,
    bar_gauge,
    new_dashboard,
    pie,
    query,
    stat_panel,
    thresholds,
    time_series,
    value_map,
)

UID = "wine-prediction-api"


def build() -> dashboard_builder.Dashboard:
    """Builds the prediction-API dashboard."""
    board = new_dashboard(
        UID,
        "Wine MLOps / Prediction API",
        "Traffic, errors, latency, predictions and the served model of the prediction API.",
        ["prediction-api"],
    )

    board = board.with_row(dashboard_builder.Row("Now"))
    board = board.with_panel(
        stat_panel(
            "Served model",
            "Name, version and alias of the model each API instance serves (GET /model).",
            query(
                'wine_api_model_info{job="prediction-api", model_version!=""}',
                "{{model_name}} v{{model_version}} @{{alias}}",
            ),
            text_mode=common.BigValueTextMode.NAME,
        )
        .span(6)
        .height(4)
    )
    board = board.with_panel(
        stat_panel(
            "Model loaded",
            "Whether a model is loaded (GET /readyz answers 200). NO MODEL: every "
            "prediction fails with 503 (alert WineApiNoModelServed).",
            query('min(wine_api_model_loaded{job="prediction-api"})'),
            mappings=value_map({"1": ("READY", "green"), "0": ("NO MODEL", "red")}),
        )
        .span(4)
        .height(4)
    )
    board = board.with_panel(
        stat_panel(
            "Requests/s",
            "User requests per second over 5 minutes (recording rule).",
            query("sum(job:wine_api_requests:rate5m)"),
            unit="reqps",
        )
        .span(4)
        .height(4)
    )
    board = board.with_panel(
        stat_panel(
            "Server errors",
            "Share of requests answered 5xx over 5 minutes; the alert fires above 5%.",
            query("max(job:wine_api_request_errors:ratio_rate5m)"),
            unit="percentunit",
            colors=thresholds((None, "green"), (0.01, "yellow"), (0.05, "red")),
        )
        .span(3)
        .height(4)
    )
    board = board.with_panel(
        stat_panel(
            "p99 latency",
            "99th percentile of the response time over 5 minutes; the alert fires above 0.5 s.",
            query("max(job:wine_api_request_duration_seconds:p99_5m)"),
            unit="s",
            colors=thresholds((None, "green"), (0.1, "yellow"), (0.5, "red")),
        )
        .span(3)
        .height(4)
    )
    board = board.with_panel(
        stat_panel(
            "Under 100 ms",
            "Share of requests answered within 100 ms over 5 minutes.",
            query("min(job:wine_api_requests_under_100ms:ratio_rate5m)"),
            unit="percentunit",
            colors=thresholds((None, "red"), (0.95, "yellow"), (0.99, "green")),
        )
        .span(4)
        .height(4)
    )

    board = board.with_row(dashboard_builder.Row("Traffic and errors"))
    board = board.with_panel(
        time_series(
            "Requests per second by status",
            "User requests per second by HTTP status (scrapes and probes excluded).",
            query(
                "sum by (status) "
                f"(rate(wine_api_requests_total{{{API_TRAFFIC}}}[$__rate_interval]))",
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
            "Requests per second by route",
            "User requests per second by route template and method.",
            query(
                "sum by (route, method) "
                f"(rate(wine_api_requests_total{{{API_TRAFFIC}}}[$__rate_interval]))",
                "{{method}} {{route}}",
            ),
            unit="reqps",
            min_value=0,
        )
        .span(12)
        .height(8)
    )
    board = board.with_panel(
        time_series(
            "Error ratio",
            "Share of requests answered with a server error (5xx: alert above 5%) or "
            "rejected as invalid (4xx: alert above 25%), over 5 minutes.",
            query("job:wine_api_request_errors:ratio_rate5m", "server errors (5xx)"),
            query(
                "job:wine_api_request_client_errors:ratio_rate5m",
                "client errors (4xx)",
                ref="B",
            ),
            unit="percentunit",
            min_value=0,
        )
        .span(24)
        .height(8)
    )

    board = board.with_row(dashboard_builder.Row("Latency"))
    board = board.with_panel(
        time_series(
            "Latency p50 / p90 / p99",
            "Percentiles of the API's response time over 5 minutes (recording rules), "
            "from its own histogram.",
            query("job:wine_api_request_duration_seconds:p50_5m", "p50"),
            query("job:wine_api_request_duration_seconds:p90_5m", "p90", ref="B"),
            query("job:wine_api_request_duration_seconds:p99_5m", "p99", ref="C"),
            unit="s",
            min_value=0,
        )
        .span(12)
        .height(8)
    )
    board = board.with_panel(
        time_series(
            "Share of requests under 100 ms",
            "Requests answered within 100 ms divided by all requests, over 5 minutes.",
            query("job:wine_api_requests_under_100ms:ratio_rate5m", "under 100 ms"),
            unit="percentunit",
            max_value=1,
        )
        .span(12)
        .height(8)
    )
    board = board.with_panel(
        time_series(
            "p99 latency by route",
            "99th percentile of the response time of each route.",
            query(
                "histogram_quantile(0.99, sum by (route, le) "
                f"(rate(wine_api_request_duration_seconds_bucket{{{API_TRAFFIC}}}"
                "[$__rate_interval])))",
                "{{route}}",
            ),
            unit="s",
            min_value=0,
        )
        .span(24)
        .height(8)
    )

    board = board.with_row(dashboard_builder.Row("Predictions and model"))
    board = board.with_panel(
        time_series(
            "Predictions per cultivar",
            "Wines classified per second, by predicted cultivar.",
            query(
                'sum by (class_name) (rate(wine_api_predictions_total{job="prediction-api"}'
                "[$__rate_interval]))",
                "{{class_name}}",
            ),
            unit="short",
            min_value=0,
        )
        .span(12)
        .height(8)
    )
    board = board.with_panel(
        pie(
            "Cultivars predicted in the time range",
            "Share of each predicted cultivar over the dashboard's time range.",
            query(
                'sum by (class_name) (increase(wine_api_predictions_total{job="prediction-api"}'
                "[$__range]))",
                "{{class_name}}",
                instant=True,
            ),
        )
        .span(6)
        .height(8)
    )
    board = board.with_panel(
        bar_gauge(
            "Model loads in the time range",
            "Initial loads and hot swaps (reload) of the served model, by result; a failure "
            "leaves the previous model serving.",
            query(
                'sum by (kind, result) (increase(wine_api_model_loads_total{job="prediction-api"}'
                "[$__range]))",
                "{{kind}} {{result}}",
                instant=True,
            ),
        )
        .span(6)
        .height(8)
    )
    board = board.with_panel(
        time_series(
            "Served model version",
            "API instances serving each model version: when the champion moves, the old "
            "version's line drops and the new one's rises (a reload).",
            query(
                "count by (model_name, model_version) "
                '(wine_api_model_info{job="prediction-api", model_version!=""})',
                "{{model_name}} v{{model_version}}",
            ),
            min_value=0,
        )
        .span(12)
        .height(8)
    )
    board = board.with_panel(
        time_series(
            "Registry check failures and last load",
            "Failed look-ups of the served alias in MLflow (per second), and seconds since "
            "the last successful model load.",
            query(
                'sum(rate(wine_api_registry_check_failures_total{job="prediction-api"}'
                "[$__rate_interval]))",
                "registry check failures/s",
            ),
            query(
                "time() - max("
                'wine_api_model_last_load_timestamp_seconds{job="prediction-api"} > 0)',
                "seconds since last load",
                ref="B",
            ),
            min_value=0,
        )
        .span(12)
        .height(8)
    )

    board = board.with_row(dashboard_builder.Row("Inputs outside the training range"))
    board = board.with_panel(
        bar_gauge(
            "Out-of-range values per feature in the time range",
            "Input values below or above the range of the training data, per feature, over "
            "the dashboard's time range (alert WineApiInputsOutOfTrainingRange).",
            query(
                "sum by (feature, side) (increase(wine_api_input_out_of_training_range_total"
                '{job="prediction-api"}[$__range]))',
                "{{feature}} ({{side}})",
                instant=True,
            ),
            colors=thresholds((None, "green"), (1, "orange")),
        )
        .span(12)
        .height(12)
    )
    board = board.with_panel(
        time_series(
            "Out-of-range values per classified wine",
            "Out-of-range input values per wine classified, by feature; the alert fires "
            "when the total stays above 0.25 for 5 minutes.",
            query(
                "sum by (feature) (rate(wine_api_input_out_of_training_range_total"
                '{job="prediction-api"}[$__rate_interval])) / scalar(sum(rate('
                'wine_api_predictions_total{job="prediction-api"}[$__rate_interval])))',
                "{{feature}}",
            ),
            min_value=0,
        )
        .span(12)
        .height(12)
    )
    return board
