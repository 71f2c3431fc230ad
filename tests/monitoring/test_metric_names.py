"""Every metric name the dashboards and rules read is one the services really export.

A real MLflow server (SQLite) gets a real training session (one model family); then the
real exporter, the real prediction API (serving the champion just trained, its prediction
log in a SQLite file, its monitor refreshing every second) and the real retraining webhook
(``python -m model_training.webhook``) run as processes. A wine is classified and labelled,
so the API's live accuracy and drift figures exist. Their ``/metrics``, and the MLflow
server's ops ``/metrics``, give the names that exist. Every name in every panel and variable
query, alert, alert annotation and recording rule must be one of them, a recording rule, or
one of Prometheus's own (``up``, ``scrape_*``, ``ALERTS``, ``prometheus_*`` of its
self-scrape) or Alertmanager's (``alertmanager_*``). The expositions also follow the naming
practice: units in names, no ``_created`` series, no name shared with MLflow's own
``/metrics``.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from devstack import (
    Service,
    free_port,
    run_training,
    start_api,
    start_exporter,
    start_mlflow_server,
    start_service,
)
from tests.monitoring.conftest import PROMETHEUS_DIR
from tests.monitoring.panels import panel_queries, substitute
from wine_mlops.features import FEATURE_NAMES, load_wine_frame
from wine_mlops.waiting import wait_until

pytestmark = pytest.mark.integration

#: Series Prometheus makes itself: the scrape health and the alerts' state.
PROMETHEUS_OWN = frozenset(
    {
        "up",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
        "scrape_series_added",
        "ALERTS",
        "ALERTS_FOR_STATE",
    }
)

#: The names of the model monitoring loop (docs/monitoring.md) that rules and the "Model
#: health" dashboard read, by the part that exports them.
MONITORING_LOOP_NAMES: dict[str, frozenset[str]] = {
    "prediction-api monitor": frozenset(
        {
            "wine_api_live_accuracy",
            "wine_api_live_labelled",
            "wine_api_feature_drift",
            "wine_api_drift_window_rows",
            "wine_api_monitoring_last_refresh_timestamp_seconds",
        }
    ),
    "prediction-api prediction log": frozenset(
        {
            "wine_api_prediction_log_rows_total",
            "wine_api_prediction_log_dropped_total",
            "wine_api_feedback_total",
        }
    ),
    "model-training-webhook": frozenset(
        {"wine_retraining_sessions_total", "wine_retraining_last_session_timestamp_seconds"}
    ),
}

#: The sample names each metric type exposes besides the family name.
_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count"),
    "info": ("_info",),
}

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"' + r"|'(?:[^'\\]|\\.)*'")
_BRACES = re.compile(r"\{[^{}]*\}|\[[^\[\]]*\]")
_GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
_NAME = re.compile(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:]|\s*\()")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "inf", "nan"}
)
_ANNOTATION_QUERY = re.compile(r'printf\s+"([a-zA-Z_:][a-zA-Z0-9_:]*)\{')


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (functions, labels, keywords left out).

    >>> sorted(metric_names('sum by (job) (rate(a_total{x="y"}[5m])) / on () b > 0.5'))
    ['a_total', 'b']
    """
    text = _GROUPING.sub(" ", _BRACES.sub(" ", _STRING.sub(" ", expr)))
    return {name for name in _NAME.findall(text) if name.lower() not in _KEYWORDS}


def exported_names(exposition: str) -> set[str]:
    """Every sample name an exposition offers, including those of labelled metrics that
    have no child yet (only their HELP and TYPE lines are written)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names.add(family.name)
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return names


def _with_champion(exposition: str) -> str | None:
    return exposition if "mlflow_model_alias_accuracy_ratio{" in exposition else None


def _with_live_figures(exposition: str) -> str | None:
    """The API's exposition once its monitor has exported accuracy and drift."""
    live = ("wine_api_live_accuracy{", "wine_api_feature_drift{", "wine_api_drift_window_rows ")
    return exposition if all(name in exposition for name in live) else None


def start_webhook(workdir: Path, tracking_uri: str) -> Service:
    """The retraining webhook as the stack runs it (``python -m model_training.webhook``)."""
    port = free_port()
    return start_service(
        "model-training-webhook",
        [sys.executable, "-m", "model_training.webhook"],
        f"http://127.0.0.1:{port}",
        "/healthz",
        {
            "PATH": os.environ["PATH"],
            "MLFLOW_TRACKING_URI": tracking_uri,
            "WINE_RETRAIN_WEBHOOK_TOKEN": "metric-names-test-token",
            "WINE_RETRAIN_WEBHOOK_HOST": "127.0.0.1",
            "WINE_RETRAIN_WEBHOOK_PORT": str(port),
            "WINE_MONITORING_DB_URL": f"sqlite:///{workdir / 'monitoring.db'}",
        },
        workdir / "webhook.log",
    )


@dataclass
class Exported:
    """What each real service's ``/metrics`` showed."""

    exporter: str
    api: str
    mlflow: str
    webhook: str

    @property
    def names(self) -> set[str]:
        texts = (self.exporter, self.api, self.mlflow, self.webhook)
        return set().union(*map(exported_names, texts))


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exported]:
    workdir = tmp_path_factory.mktemp("metric-names")
    services: list[Service] = []
    try:
        server = start_mlflow_server(
            workdir, {"MLFLOW_BACKEND_STORE_URI": f"sqlite:///{workdir / 'mlflow.db'}"}
        )
        services.append(server)
        trained = run_training(server.url, candidates="LogisticRegression", WINE_MIN_ACCURACY="0")
        assert trained.returncode == 0, trained.stderr[-3000:]
        exporter = start_exporter(server.url, workdir, EXPORTER_REFRESH_INTERVAL="1")
        services.append(exporter)
        api = start_api(  # returns once the champion is loaded
            server.url,
            workdir,
            WINE_MONITORING_DB_URL=f"sqlite:///{workdir / 'monitoring.db'}",
            WINE_MONITORING_REFRESH_SECONDS="1",
            WINE_PREDICTION_LOG_FLUSH_SECONDS="0.2",
        )
        services.append(api)
        webhook = start_webhook(workdir, server.url)
        services.append(webhook)

        wine = load_wine_frame()
        first = {name: float(wine[name].iloc[0]) for name in FEATURE_NAMES}
        with httpx.Client(base_url=api.url, timeout=30) as client:
            answer = client.post("/predict", json={**first, "alcohol": 0.132})
            assert answer.status_code == 200, answer.text
            assert answer.json()["warnings"]  # counted as out of range
            labelled = client.post(
                "/feedback",
                json={"prediction_id": answer.json()["prediction_id"], "true_class_id": 0},
            )
            assert labelled.status_code == 200, labelled.text
            api_text = api.wait_until(
                lambda: _with_live_figures(client.get("/metrics").text),
                "the API's monitor to export live accuracy and drift",
                timeout=60,
                interval=0.5,
            )
        webhook_text = httpx.get(f"{webhook.url}/metrics", timeout=30).text
        exporter_text = wait_until(
            lambda: _with_champion(exporter.metrics()),
            "the exporter to read the trained champion",
            timeout=60,
            interval=0.5,
        )
        mlflow_text = httpx.get(f"{server.ops_url}/metrics", timeout=30).text
        yield Exported(exporter_text, api_text, mlflow_text, webhook_text)
    finally:
        for service in reversed(services):
            service.stop()


def _rules() -> Iterator[tuple[str, dict]]:
    for path in sorted((PROMETHEUS_DIR / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                yield path.name, rule


def _read_names() -> dict[str, set[str]]:
    """Where each metric name is read: name -> places (panel, rule, annotation)."""
    read: dict[str, set[str]] = {}
    for query in panel_queries():
        for name in metric_names(substitute(query.expr)):
            read.setdefault(name, set()).add(f"{query.dashboard} / {query.panel}")
    for file, rule in _rules():
        where = f"{file} {rule.get('alert') or rule.get('record')}"
        for name in metric_names(rule["expr"]):
            read.setdefault(name, set()).add(where)
        for text in rule.get("annotations", {}).values():
            for name in _ANNOTATION_QUERY.findall(text):
                read.setdefault(name, set()).add(f"{where} annotation")
    return read


def test_the_name_extraction_finds_metrics_and_nothing_else() -> None:
    expr = (
        'max by (instance) (label_replace(wine_api_model_info{job="x", v!=""}, "model", "$1",'
        ' "model_name", "(.*)")) unless on (model) mlflow_model_alias_info'
        " and on () (max(mlflow_up) == 1) or vector(0) > 1e3"
        " / scalar(rate(wine_api_predictions_total[5m] offset 1m))"
        " - time() + job:wine_api_requests:rate5m"
    )
    assert metric_names(expr) == {
        "wine_api_model_info",
        "mlflow_model_alias_info",
        "mlflow_up",
        "wine_api_predictions_total",
        "job:wine_api_requests:rate5m",
    }


def test_every_name_dashboards_and_rules_read_is_exported(exported: Exported) -> None:
    records = {rule["record"] for _, rule in _rules() if "record" in rule}
    available = exported.names | records | PROMETHEUS_OWN
    read = _read_names()
    assert len(read) >= 25
    missing = {
        name: sorted(places)
        for name, places in read.items()
        if name not in available and not name.startswith(("prometheus_", "alertmanager_"))
    }
    assert missing == {}
    # the names the renaming introduced are among those read, and exist
    assert {
        "mlflow_run_accuracy_ratio",
        "mlflow_model_alias_accuracy_ratio",
        "wine_champion_accuracy_floor_ratio",
        "wine_exporter_last_refresh_success_timestamp_seconds",
        "wine_exporter_refreshes_total",
        "wine_api_input_out_of_range_total",
    } <= set(read) & available


def test_the_monitoring_loop_names_are_read_and_exported(exported: Exported) -> None:
    """The names of the rules and the "Model health" dashboard come from the API's monitor,
    its prediction log and the retraining webhook, each from the part named."""
    read = _read_names()
    texts = {
        "prediction-api monitor": exported.api,
        "prediction-api prediction log": exported.api,
        "model-training-webhook": exported.webhook,
    }
    for part, names in MONITORING_LOOP_NAMES.items():
        assert names <= set(read), f"{part}: {sorted(names - set(read))} are not read"
        missing = names - exported_names(texts[part])
        assert not missing, f"{part} does not export {sorted(missing)}"
    # the rules read what the monitor exports, with the labels they join on
    assert 'wine_api_live_accuracy{model_version="' in exported.api
    assert 'wine_api_live_labelled{model_version="' in exported.api
    assert 'wine_api_feature_drift{feature="alcohol"}' in exported.api
    assert 'wine_api_feedback_total{outcome="correct"}' in exported.api
    assert "wine_retraining_sessions_total{alertname=" in exported.webhook


def test_the_exporter_names_follow_the_practice(exported: Exported) -> None:
    names = exported_names(exported.exporter)
    # every metric the training logs, each under its own name with its unit
    for name in (
        "mlflow_run_accuracy_ratio",
        "mlflow_run_f1_macro_ratio",
        "mlflow_run_log_loss",
        "mlflow_run_fit_time_seconds",
        "mlflow_model_alias_accuracy_ratio",
        "mlflow_model_alias_predict_time_per_row_seconds",
        "wine_exporter_last_refresh_success_timestamp_seconds",
        "wine_exporter_refresh_errors_total",
        "wine_exporter_dropped_items",
        "process_resident_memory_bytes",
    ):
        assert name in names, name
    assert not [n for n in names if n.endswith(("_metric", "_age_seconds", "_created"))]
    # nothing under the prefixes of MLflow's own /metrics (mlflow_exporter_info, mlflow_http_*)
    mlflow_own = exported_names(exported.mlflow)
    assert {"mlflow_exporter_info", "mlflow_http_request_total"} <= mlflow_own
    assert not [n for n in names if n.startswith(("mlflow_exporter_", "mlflow_http_"))]
    assert not names & mlflow_own


def test_the_api_names_follow_the_practice(exported: Exported) -> None:
    names = exported_names(exported.api)
    for name in (
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "python_info",
        "wine_api_requests_in_progress",
        "wine_api_input_out_of_range_total",
        "wine_api_requests_total",
    ):
        assert name in names, name
    assert not [n for n in names if n.endswith("_created") or "training_range" in n]
    assert "wine_api_out_of_range_total" not in names
    alcohol = 'wine_api_input_out_of_range_total{feature="alcohol",side="below"} 1.0'
    assert alcohol in exported.api.splitlines()


def test_the_mlflow_server_exports_no_created_series(exported: Exported) -> None:
    names = exported_names(exported.mlflow)
    assert "wine_mlflow_store_up" in names
    assert not [n for n in names if n.endswith("_created")]
