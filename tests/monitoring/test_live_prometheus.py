"""The real Prometheus binary with the stack's config and rules, scraping real local services.

A real ``mlflow server`` (SQLite), the real exporter (``python -m mlflow_exporter``) and the
real prediction API (``python -m prediction_api``, with no model registered yet) run as
local processes. The test config is ``prometheus/prometheus.yml`` with only the target
addresses replaced (plus a decoy target that is down), a 1 s scrape/evaluation interval and
the alerts' ``for`` shortened to 1 s; relabelling, metrics paths and rule files are the
stack's own. Then the helpers of :mod:`tests.monitoring.panels` are checked against it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml

from tests.monitoring.conftest import PROMETHEUS_DIR
from tests.monitoring.panels import (
    EMPTY_WHEN_HEALTHY,
    firing_alerts,
    instant_query,
    queries_without_data,
    targets_not_up,
    wait_for_alert,
)
from tests.support.processes import (
    MlflowServer,
    auth_env,
    free_port,
    start_mlflow_server,
    stop,
)
from wine_mlops.features import FEATURE_NAMES
from wine_mlops.healthcheck import wait_until_healthy

pytestmark = pytest.mark.integration


@dataclass
class Live:
    """The running Prometheus and what it scrapes."""

    url: str
    addresses: dict[str, str]
    decoy: str


def _service(module: str, workdir: Path, health: str, env: dict[str, str]) -> subprocess.Popen:
    port = env.get("EXPORTER_PORT") or env["API_PORT"]
    log = workdir / f"{module}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", module],
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "WINE_"))},
            "MLFLOW_DISABLE_TELEMETRY": "true",
            **env,
        },
        stdout=open(log, "wb"),  # noqa: SIM115 (the child keeps it)
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}{health}", 90, process)
    except Exception:
        stop(process)
        raise RuntimeError(f"{module} did not start:\n{log.read_text(errors='replace')}") from None
    return process


def _test_config(workdir: Path, addresses: dict[str, str], decoy: str) -> Path:
    """The stack's config and rules, with local targets and short intervals."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
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
    tmp_path_factory: pytest.TempPathFactory, prometheus_binary: str, promtool: str
) -> Iterator[Live]:
    workdir = tmp_path_factory.mktemp("live-prometheus")
    processes: list[subprocess.Popen] = []
    server: MlflowServer | None = None
    try:
        server = start_mlflow_server(
            workdir, {"MLFLOW_BACKEND_STORE_URI": f"sqlite:///{workdir / 'mlflow.db'}"}
        )
        exporter_port, api_port, prometheus_port = free_port(), free_port(), free_port()
        common = {"MLFLOW_TRACKING_URI": server.url}  # each service logs in as its own user
        processes.append(
            _service(
                "mlflow_exporter",
                workdir,
                "/healthz",
                {
                    **common,
                    **auth_env("mlflow-exporter"),
                    "EXPORTER_HOST": "127.0.0.1",
                    "EXPORTER_PORT": str(exporter_port),
                    "EXPORTER_REFRESH_INTERVAL": "1",
                },
            )
        )
        processes.append(
            _service(
                "prediction_api",
                workdir,
                "/healthz",
                {
                    **common,
                    **auth_env("prediction-api"),
                    "API_HOST": "127.0.0.1",
                    "API_PORT": str(api_port),
                    "WINE_WATCH_INTERVAL_SECONDS": "2",
                },
            )
        )
        addresses = {
            "prometheus": f"127.0.0.1:{prometheus_port}",
            "prediction-api": f"127.0.0.1:{api_port}",
            "mlflow-exporter": f"127.0.0.1:{exporter_port}",
            "mlflow-server": server.ops_url.removeprefix("http://"),  # the unpublished ops port
        }
        decoy = f"localhost:{free_port()}"  # nothing listens there
        config = _test_config(workdir, addresses, decoy)
        checked = subprocess.run(
            [promtool, "check", "config", str(config)], capture_output=True, text=True
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        log = workdir / "prometheus.log"
        processes.append(
            subprocess.Popen(
                [
                    prometheus_binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={workdir / 'data'}",
                    "--storage.tsdb.retention.time=1h",
                    f"--web.listen-address=127.0.0.1:{prometheus_port}",
                ],
                stdout=subprocess.DEVNULL,
                stderr=open(log, "wb"),  # noqa: SIM115 (the child keeps it)
                start_new_session=True,
            )
        )
        url = f"http://127.0.0.1:{prometheus_port}"
        wait_until_healthy(f"{url}/-/ready", 60, processes[-1])
        yield Live(url, addresses, decoy)
    finally:
        for process in reversed(processes):
            stop(process)
        if server is not None:
            stop(server.process)


def _wait_for(url: str, promql: str, timeout: float = 60) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        result = instant_query(url, promql)
        if result or time.monotonic() > deadline:
            return result
        time.sleep(1)


def test_every_job_is_scraped_with_relabelled_instances(live: Live) -> None:
    result = _wait_for(
        live.url, "count by (job) (up == 1) == 1 and on (job) count by (job) (up)", 60
    )
    deadline = time.monotonic() + 60
    while len(result) < 4 and time.monotonic() < deadline:  # all four jobs up at once
        time.sleep(1)
        result = instant_query(live.url, "up == 1")
    up = {(s["metric"]["job"], s["metric"]["instance"]) for s in instant_query(live.url, "up == 1")}
    # The instance label is the host without the port (relabel_configs).
    assert up == {
        ("prometheus", "127.0.0.1"),
        ("prediction-api", "127.0.0.1"),
        ("mlflow-exporter", "127.0.0.1"),
        ("mlflow-server", "127.0.0.1"),
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
        ("mlflow-exporter", "mlflow_exporter_snapshot_age_seconds"),
        ("prediction-api", "wine_api_model_loaded"),
        ("prediction-api", "wine_api_requests_total"),
        ("prometheus", "prometheus_build_info"),
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
    assert not EMPTY_WHEN_HEALTHY & empty
