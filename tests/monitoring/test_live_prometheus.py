"""The real Prometheus binary with the stack's config and rules, scraping real local services.

A real ``mlflow server`` (SQLite), the real exporter (``python -m mlflow_exporter``) and the
real prediction API (``python -m prediction_api``, with no model registered yet) and a real
Alertmanager with the stack's routes run as local processes. The test config is
``prometheus/prometheus.yml`` with only the target addresses replaced (plus a decoy target
that is down), a 1 s scrape/evaluation interval and the alerts' ``for`` shortened to 1 s;
relabelling, metrics paths, rule files and the alerting section are the stack's own. The
retraining webhook's job is left out: its receiver's ``/metrics`` is checked by
model-training's tests and by tests/monitoring/test_metric_names.py. Then the helpers of
:mod:`tests.monitoring.panels` are checked against it.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml

from devstack import (
    Service,
    auth_env,
    free_port,
    start_api,
    start_exporter,
    start_mlflow_server,
    start_prometheus,
)
from tests.monitoring.alertmanager import WebhookRecorder, alertmanager_config, start_alertmanager
from tests.monitoring.conftest import PROMETHEUS_DIR
from tests.monitoring.panels import (
    EMPTY_WHEN_HEALTHY,
    EMPTY_WITHOUT_FEEDBACK,
    firing_alerts,
    instant_query,
    queries_without_data,
    targets_not_up,
    wait_for_alert,
)
from wine_mlops.features import FEATURE_NAMES
from wine_mlops.waiting import wait_until

pytestmark = pytest.mark.integration


@dataclass
class Live:
    """The running Prometheus and what it scrapes."""

    url: str
    addresses: dict[str, str]
    decoy: str
    webhook: WebhookRecorder


def _test_config(workdir: Path, addresses: dict[str, str], decoy: str) -> Path:
    """The stack's config and rules, with local targets and short intervals."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["scrape_configs"] = [
        job for job in config["scrape_configs"] if job["job_name"] != "model-training-webhook"
    ]
    (manager,) = config["alerting"]["alertmanagers"]
    manager["static_configs"][0]["targets"] = [addresses["alertmanager"]]
    for job in config["scrape_configs"]:
        job["static_configs"][0]["targets"] = [addresses[job["job_name"]]]
        if job["job_name"] == "mlflow-exporter":
            job["static_configs"][0]["targets"].append(decoy)
    (workdir / "rules").mkdir()
    for rules in (PROMETHEUS_DIR / "rules").glob("*.yml"):
        text = re.sub(r"^(\s+for:) \S+$", r"\1 1s", rules.read_text(), flags=re.MULTILINE)
        (workdir / "rules" / rules.name).write_text(text)
    path = workdir / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory,
    prometheus_binary: str,
    promtool: str,
    alertmanager_binary: str,
) -> Iterator[Live]:
    workdir = tmp_path_factory.mktemp("live-prometheus")
    services: list[Service] = []
    token_file = workdir / "retraining-webhook-token"
    token_file.write_text("live-test-token")
    webhook = WebhookRecorder().__enter__()
    try:
        manager = start_alertmanager(
            alertmanager_binary,
            alertmanager_config(workdir, webhook.url, token_file, wait="1s"),
            workdir,
        )
        services.append(manager)
        server = start_mlflow_server(
            workdir, {"MLFLOW_BACKEND_STORE_URI": f"sqlite:///{workdir / 'mlflow.db'}"}
        )
        services.append(server)
        # each service logs in as its own user
        exporter = start_exporter(
            server.url,
            workdir,
            login=auth_env("mlflow-exporter"),
            EXPORTER_REFRESH_INTERVAL="1",
        )
        services.append(exporter)
        api = start_api(
            server.url,
            workdir,
            wait_ready=False,
            login=auth_env("prediction-api"),
            WINE_WATCH_INTERVAL_SECONDS="2",
        )
        services.append(api)
        prometheus_port = free_port()
        addresses = {
            "prometheus": f"127.0.0.1:{prometheus_port}",
            "prediction-api": api.url.removeprefix("http://"),
            "mlflow-exporter": exporter.url.removeprefix("http://"),
            "mlflow-server": server.ops_url.removeprefix("http://"),  # the unpublished ops port
            "alertmanager": manager.url.removeprefix("http://"),
        }
        decoy = f"localhost:{free_port()}"  # nothing listens there
        config = _test_config(workdir, addresses, decoy)
        checked = subprocess.run(
            [promtool, "check", "config", str(config)], capture_output=True, text=True
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        prometheus = start_prometheus(prometheus_binary, config, workdir, prometheus_port)
        services.append(prometheus)
        yield Live(prometheus.url, addresses, decoy, webhook)
    finally:
        for service in reversed(services):
            service.stop()
        webhook.__exit__()


def _wait_for(url: str, promql: str, timeout: float = 60) -> list[dict]:
    """The result of ``promql`` once it is not empty (empty when ``timeout`` passed first)."""
    try:
        return wait_until(lambda: instant_query(url, promql), promql, timeout=timeout, interval=1)
    except TimeoutError:
        return []


def test_every_job_is_scraped_with_relabelled_instances(live: Live) -> None:
    _wait_for(live.url, "count by (job) (up == 1) == 1 and on (job) count by (job) (up)", 60)
    with contextlib.suppress(TimeoutError):  # all four jobs up at once
        wait_until(
            lambda: len(instant_query(live.url, "up == 1")) >= 5,
            "5 jobs up",
            timeout=60,
            interval=1,
        )
    up = {(s["metric"]["job"], s["metric"]["instance"]) for s in instant_query(live.url, "up == 1")}
    # The instance label is the host without the port (relabel_configs).
    assert up == {
        ("prometheus", "127.0.0.1"),
        ("prediction-api", "127.0.0.1"),
        ("mlflow-exporter", "127.0.0.1"),
        ("mlflow-server", "127.0.0.1"),
        ("alertmanager", "127.0.0.1"),
    }
    down = targets_not_up(live.url)
    assert [(t["job"], t["instance"], t["scrape_url"]) for t in down] == [
        ("mlflow-exporter", "localhost", f"http://{live.decoy}/metrics")
    ]


@pytest.mark.parametrize(
    ("job", "metric"),
    [
        ("mlflow-server", "mlflow_http_request_total"),
        ("mlflow-server", "mlflow_http_request_duration_seconds_bucket"),
        ("mlflow-exporter", "mlflow_up"),
        ("mlflow-exporter", "wine_exporter_last_refresh_success_timestamp_seconds"),
        ("prediction-api", "wine_api_requests_in_progress"),
        ("prediction-api", "process_resident_memory_bytes"),
        ("prediction-api", "wine_api_model_loaded"),
        ("prediction-api", "wine_api_requests_total"),
        ("prometheus", "prometheus_build_info"),
        ("alertmanager", "alertmanager_notifications_total"),
    ],
)
def test_each_job_serves_its_metrics_on_its_path(live: Live, job: str, metric: str) -> None:
    assert _wait_for(live.url, f'{metric}{{job="{job}"}}'), f"{metric} not scraped from {job}"


def test_recording_rules_compute_the_api_error_ratio(live: Live) -> None:
    api = f"http://{live.addresses['prediction-api']}"
    wine = dict.fromkeys(FEATURE_NAMES, 1.0)

    def send(times: int) -> None:
        for _ in range(times):  # a valid wine but no model yet: 503; not JSON: 415
            assert requests.post(f"{api}/predict", json=wine, timeout=10).status_code == 503
            bad = requests.post(
                f"{api}/predict", data="x", headers={"Content-Type": "text/plain"}, timeout=10
            )
            assert bad.status_code == 415

    # A counter's first increase happens before its first scrape; rate() sees later ones.
    send(1)
    assert _wait_for(live.url, 'wine_api_requests_total{route="/predict", status="415"}')
    send(10)
    ratio = _wait_for(
        live.url, 'job:wine_api_request_errors:ratio_rate5m{job="prediction-api"} > 0'
    )
    assert ratio, "the 5xx ratio was not recorded"
    assert 0 < float(ratio[0]["value"][1]) < 1
    client = _wait_for(live.url, "job:wine_api_request_client_errors:ratio_rate5m > 0")
    assert client, "the 4xx ratio was not recorded"
    assert _wait_for(live.url, "job:wine_api_request_duration_seconds:p99_5m > 0")


def test_alerts_reach_firing_and_name_the_failing_target(live: Live) -> None:
    down = wait_for_alert(live.url, "WineTargetDown", timeout=60)
    assert down["labels"]["instance"] == "localhost"
    assert "docker compose logs" in down["annotations"]["description"]
    no_model = wait_for_alert(live.url, "WineApiNoModelServed", timeout=60)
    assert no_model["annotations"]["summary"].startswith("The prediction API serves no model")
    firing = {a["labels"]["alertname"] for a in firing_alerts(live.url)}
    assert {"WineTargetDown", "WineApiNoModelServed"} <= firing
    assert "WineServedModelNotChampion" not in firing
    with pytest.raises(TimeoutError, match="WineChampionAccuracyBelowFloor"):
        wait_for_alert(live.url, "WineChampionAccuracyBelowFloor", timeout=2)


def test_firing_alerts_reach_alertmanager_and_the_others_are_not_sent(live: Live) -> None:
    """Prometheus sends every firing alert to Alertmanager; none of these asks for a
    retraining, so Alertmanager assigns them to the receiver that sends nothing."""
    wait_for_alert(live.url, "WineTargetDown", timeout=60)
    manager = f"http://{live.addresses['alertmanager']}"

    def received() -> list[dict]:
        found = requests.get(f"{manager}/api/v2/alerts", timeout=10).json()
        return [a for a in found if a["labels"]["alertname"] == "WineTargetDown"]

    alerts = wait_until(received, "WineTargetDown in Alertmanager", timeout=60, interval=1)
    assert {r["name"] for a in alerts for r in a["receivers"]} == {"discard"}
    assert alerts[0]["labels"]["stack"] == "wine-mlops"  # Prometheus's external label
    active = _wait_for(live.url, "prometheus_notifications_alertmanagers_discovered == 1")
    assert active, "Prometheus has not discovered the Alertmanager"
    assert live.webhook.received == []


def test_every_panel_query_is_valid_promql_and_empty_ones_are_reported(live: Live) -> None:
    test_alerts_reach_firing_and_name_the_failing_target(live)  # alerts exist by now
    problems = queries_without_data(live.url)
    errors = [str(p) for p in problems if p.problem != "no data"]
    assert errors == []
    empty = {p.query.key for p in problems}
    # Scraped facts are charted; with no model and no training run, predictions and
    # run metrics are not: the helper must report those, and only real gaps.
    assert ("wine-platform", "Scrape targets") not in empty
    assert ("wine-platform", "MLflow requests per second by status") not in empty
    assert ("wine-platform", "Firing alerts (details)") not in empty  # alerts fire here
    assert ("wine-prediction-api", "Model loaded") not in empty
    assert ("wine-prediction-api", "Requests per second by status") not in empty
    assert ("wine-prediction-api", "Served model") in empty
    assert ("wine-model-quality", "Test accuracy") in empty
    # Model health: the alerts' state and the API's feedback and prediction-log counters are
    # charted from the start; the live accuracy waits for feedback, the alert list for alerts.
    assert ("wine-model-health", "Retraining alerts") not in empty
    assert ("wine-model-health", "Feedback per second, correct and wrong") not in empty
    assert ("wine-model-health", "Prediction log rows written and dropped per second") not in empty
    assert ("wine-model-health", "Live accuracy of the served version") in empty
    assert ("wine-model-health", "Retraining alerts (details)") in empty
    assert empty & EMPTY_WHEN_HEALTHY == {
        ("wine-model-health", "Retraining alerts (details)"),
        *EMPTY_WITHOUT_FEEDBACK,
    }
