"""The MLflow exporter against real MLflow servers, with real runs and a real exporter process.

The shared ``mlflow_server`` fixture runs the value checks on SQLite and PostgreSQL; the
1,000-run and outage tests use their own SQLite server, which the outage test stops and
starts again on the same port.
"""

from __future__ import annotations

import math
import os
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from mlflow_exporter.app import EXTENSION, create_app
from mlflow_exporter.collectors import build_registry
from mlflow_exporter.refresher import ExporterState, Refresher
from mlflow_exporter.settings import ExporterSettings
from mlflow_exporter.source import MlflowSource
from tests.mlflow_exporter.support import (
    FAMILIES,
    ExporterProcess,
    get,
    insert_finished_runs,
    promtool_check,
    samples,
    value,
)
from tests.support.processes import MlflowServer, free_port, start_mlflow_server, stop

pytestmark = pytest.mark.integration

FINISHED = "FINISHED"
ODD_RUN_NAME = 'odd "name" \\ é'


@dataclass
class World:
    """What the module's fixture logged in MLflow."""

    experiment: str
    empty_experiment: str
    model: str
    forest_run_id: str
    odd_run_id: str


def _run(
    client: MlflowClient,
    experiment_id: str,
    name: str,
    start: int,
    metrics: dict[str, float],
    status: str | None = FINISHED,
) -> str:
    run = client.create_run(experiment_id, start_time=start, run_name=name)
    if metrics:
        client.log_batch(
            run.info.run_id, metrics=[Metric(k, v, start, 0) for k, v in metrics.items()]
        )
    if status:
        client.set_terminated(run.info.run_id, status, end_time=start + 1000)
    return run.info.run_id


@pytest.fixture(scope="module")
def world(mlflow_server: MlflowServer) -> World:
    """Repeated run names, unfinished and failed runs, odd names, NaN, an empty experiment,
    and a registered model with a champion and a challenger."""
    client = MlflowClient(mlflow_server.url)
    suffix = uuid.uuid4().hex[:8]
    experiment = f"exporter-{suffix}"
    experiment_id = client.create_experiment(experiment)
    empty = f"exporter-empty-{suffix}"
    client.create_experiment(empty)
    t0 = int(time.time() * 1000) - 60_000
    _run(client, experiment_id, "RandomForestClassifier", t0, {"accuracy": 0.90, "f1_macro": 0.8})
    forest = _run(client, experiment_id, "RandomForestClassifier", t0 + 10_000, {"accuracy": 0.95})
    _run(client, experiment_id, "RandomForestClassifier", t0 + 20_000, {"accuracy": 0.1}, None)
    failed = _run(client, experiment_id, "SVC", t0 + 30_000, {"accuracy": 0.5}, "FAILED")
    odd = _run(
        client,
        experiment_id,
        ODD_RUN_NAME,
        t0 + 40_000,
        {"val/loss é": math.nan, "accuracy": 0.5},
    )
    _run(client, experiment_id, "no-metrics", t0 + 50_000, {})
    model = f"exporter-model-{suffix}"
    client.create_registered_model(model)
    for run_id in (forest, failed):
        client.create_model_version(model, f"runs:/{run_id}/model", run_id=run_id)
    client.set_registered_model_alias(model, "champion", "1")
    client.set_registered_model_alias(model, "challenger", "2")
    return World(experiment, empty, model, forest, odd)


def _settings(tracking_uri: str, *experiments: str, **extra: object) -> ExporterSettings:
    return ExporterSettings.model_validate(
        {
            "MLFLOW_TRACKING_URI": tracking_uri,
            "EXPORTER_EXPERIMENTS": ",".join(experiments),
            **extra,
        }
    )


def test_exported_values_equal_what_mlflow_holds(mlflow_server: MlflowServer, world: World) -> None:
    client = MlflowClient(mlflow_server.url)
    source = MlflowSource(_settings(mlflow_server.url, world.experiment, world.empty_experiment))
    refresher = Refresher(source, interval=3600)
    state = refresher.refresh_once()
    assert state.up, state.last_error
    registry = build_registry(lambda: state)

    forest = client.get_run(world.forest_run_id)
    labels = {"experiment": world.experiment, "run_name": "RandomForestClassifier"}
    for key, expected in forest.data.metrics.items():
        assert registry.get_sample_value("mlflow_run_metric", {**labels, "metric": key}) == expected
    # the older run's f1_macro is not mixed in: only the latest finished run counts
    assert registry.get_sample_value("mlflow_run_metric", {**labels, "metric": "f1_macro"}) is None
    start = registry.get_sample_value("mlflow_run_start_timestamp_seconds", labels)
    assert start == forest.info.start_time / 1000

    odd = {"experiment": world.experiment, "run_name": ODD_RUN_NAME}
    nan = registry.get_sample_value("mlflow_run_metric", {**odd, "metric": "val_loss__"})
    assert nan is not None
    assert math.isnan(nan)
    no_metrics = {"experiment": world.experiment, "run_name": "no-metrics"}
    assert registry.get_sample_value("mlflow_run_start_timestamp_seconds", no_metrics)
    assert (
        registry.get_sample_value(
            "mlflow_run_metric", {**labels, "run_name": "SVC", "metric": "accuracy"}
        )
        is None
    )  # failed runs are counted, not exported as "latest"

    runs = {"experiment": world.experiment}
    assert registry.get_sample_value("mlflow_experiment_runs", {**runs, "status": "FINISHED"}) == 4
    assert registry.get_sample_value("mlflow_experiment_runs", {**runs, "status": "RUNNING"}) == 1
    assert registry.get_sample_value("mlflow_experiment_runs", {**runs, "status": "FAILED"}) == 1
    empty = {"experiment": world.empty_experiment, "status": "FINISHED"}
    assert registry.get_sample_value("mlflow_experiment_runs", empty) == 0

    champion = client.get_model_version_by_alias(world.model, "champion")
    info = {
        "model": world.model,
        "alias": "champion",
        "version": champion.version,
        "run_id": champion.run_id or "",
    }
    assert registry.get_sample_value("mlflow_model_alias_info", info) == 1
    metric = {"model": world.model, "alias": "champion", "metric": "accuracy"}
    assert registry.get_sample_value("mlflow_model_alias_metric", metric) == 0.95
    versions = client.search_model_versions(f"name = '{world.model}'")
    assert registry.get_sample_value("mlflow_model_versions", {"model": world.model}) == len(
        versions
    )
    assert registry.get_sample_value("mlflow_up") == 1
    # experiments, runs, registered models, model versions: one page each
    assert registry.get_sample_value("mlflow_exporter_refresh_requests") == 4


def test_exporter_process_serves_promtool_valid_metrics_from_real_data(
    mlflow_server: MlflowServer, world: World, tmp_path: Path
) -> None:
    exporter = ExporterProcess(
        mlflow_server.url, free_port(), tmp_path / "exporter.log", EXPORTER_REFRESH_INTERVAL="1"
    )
    try:
        labels = {"experiment": world.experiment, "run_name": "RandomForestClassifier"}
        text = exporter.wait_for("mlflow_run_metric", 0.95, {**labels, "metric": "accuracy"})
        assert promtool_check(text) == ""
        assert samples(text)  # parses with no duplicate series
        assert value(text, "mlflow_up") == 1
        alias = {"model": world.model, "alias": "challenger"}
        assert value(text, "mlflow_model_alias_version", **alias) == 2
        status, body = get(f"{exporter.url}/healthz")
        assert status == 200
        assert '"status":"ok"' in body
        assert "Booting worker" in exporter.log()  # gunicorn, not Flask's development server
    finally:
        exporter.stop()


class RestartableServer:
    """A SQLite MLflow server on a fixed port that a test may stop and start again."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.store = {"MLFLOW_BACKEND_STORE_URI": f"sqlite:///{workdir / 'mlflow.db'}"}
        self.server = start_mlflow_server(workdir, self.store, self.port)
        self.url = self.server.url

    def stop(self) -> None:
        stop(self.server.process)

    def crash(self) -> None:
        """Kills the server and its workers at once, as a crash or an OOM kill would."""
        os.killpg(self.server.process.pid, signal.SIGKILL)
        self.server.process.wait(10)

    def start(self) -> None:
        self.server = start_mlflow_server(self.workdir, self.store, self.port)

    def requests_served(self) -> float:
        """HTTP requests the server answered so far (its metrics, on the launcher's ops port)."""
        _, text = get(f"{self.server.ops_url}/metrics")
        return sum(
            v for (name, _), v in samples(text).items() if name == "mlflow_http_request_total"
        )


@pytest.fixture(scope="module")
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestartableServer]:
    server = RestartableServer(tmp_path_factory.mktemp("exporter-mlflow"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def thousand_runs(own_server: RestartableServer) -> str:
    """An experiment with 1,000 finished runs over the five model families."""
    client = MlflowClient(own_server.url)
    experiment_id = client.create_experiment("thousand-runs")
    insert_finished_runs(own_server.store["MLFLOW_BACKEND_STORE_URI"], experiment_id, 1000)
    return "thousand-runs"


def test_a_thousand_runs_cost_a_few_requests_and_scrapes_cost_none(
    own_server: RestartableServer, thousand_runs: str
) -> None:
    app = create_app(
        _settings(own_server.url, thousand_runs, EXPORTER_REFRESH_INTERVAL=3600),
        start_refresher=False,
    )
    refresher: Refresher = app.extensions[EXTENSION]
    before = own_server.requests_served()
    own = own_server.requests_served() - before  # whether reading the count counts itself
    before = own_server.requests_served()
    state: ExporterState = refresher.refresh_once()
    during_refresh = own_server.requests_served() - before - own
    assert state.up, state.last_error
    assert state.snapshot is not None
    assert state.snapshot.runs_read == 1000
    assert state.snapshot.requests == during_refresh == 4

    before = own_server.requests_served()
    client = app.test_client()
    for _ in range(100):
        response = client.get("/metrics")
        assert response.status_code == 200
    assert own_server.requests_served() - before - own == 0

    text = response.get_data(as_text=True)
    assert (
        value(text, "mlflow_experiment_runs", experiment=thousand_runs, status="FINISHED") == 1000
    )
    mlflow = MlflowClient(own_server.url)
    experiment = mlflow.get_experiment_by_name(thousand_runs)
    assert experiment is not None
    newest = mlflow.search_runs(
        [experiment.experiment_id],
        order_by=["attributes.start_time DESC"],
        max_results=len(FAMILIES),
    )
    for run in newest:
        labels = {"experiment": thousand_runs, "run_name": run.info.run_name}
        assert (
            value(text, "mlflow_run_metric", **labels, metric="accuracy")
            == run.data.metrics["accuracy"]
        )
    series = [k for k in samples(text) if k[0] == "mlflow_run_metric"]
    assert len(series) == len(FAMILIES) * 3  # bounded by names x metrics, not by runs
    assert promtool_check(text) == ""


def test_outage_serves_the_last_snapshot_and_recovers_by_itself(
    own_server: RestartableServer, tmp_path: Path
) -> None:
    experiment = "outage"
    experiment_id = MlflowClient(own_server.url).create_experiment(experiment)
    insert_finished_runs(own_server.store["MLFLOW_BACKEND_STORE_URI"], experiment_id, 10)
    exporter = ExporterProcess(
        own_server.url,
        free_port(),
        tmp_path / "exporter.log",
        EXPORTER_REFRESH_INTERVAL="0.5",
        EXPORTER_MLFLOW_TIMEOUT="2",
        EXPORTER_EXPERIMENTS=experiment,
    )
    runs = {"experiment": experiment, "status": "FINISHED"}
    try:
        exporter.wait_for("mlflow_up", 1)
        exporter.wait_for("mlflow_experiment_runs", 10, runs)
        own_server.crash()

        down = exporter.wait_for("mlflow_up", 0)
        assert value(down, "mlflow_experiment_runs", **runs) == 10  # the last snapshot
        time.sleep(1.0)
        later = exporter.metrics()
        age = "mlflow_exporter_snapshot_age_seconds"
        assert (value(later, age) or 0) >= (value(down, age) or 0) + 0.9
        assert (value(later, "mlflow_exporter_refresh_errors_total") or 0) >= 1
        status, body = get(f"{exporter.url}/healthz")
        assert status == 200
        assert '"status":"mlflow unreachable"' in body

        own_server.start()
        up = exporter.wait_for("mlflow_up", 1)
        assert (value(up, age) or 99) < 5
        assert value(up, "mlflow_experiment_runs", **runs) == 10
        assert promtool_check(up) == ""
        log = exporter.log()
        assert "MLflow refresh failed, serving the last snapshot" in log
        assert "MLflow reachable again" in log
    finally:
        exporter.stop()
