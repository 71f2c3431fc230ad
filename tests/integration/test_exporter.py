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
from mlflow.entities import Metric, Run
from mlflow.tracking import MlflowClient

from devstack import MlflowServer, free_port, start_exporter, start_mlflow_server
from mlflow_exporter.app import EXTENSION, create_app
from mlflow_exporter.collectors import build_registry
from mlflow_exporter.refresher import ExporterState, Refresher
from mlflow_exporter.settings import ExporterSettings
from mlflow_exporter.source import MlflowSource
from mlflow_exporter.units import unit_name
from tests.mlflow_exporter.support import (
    FAMILIES,
    get,
    insert_finished_runs,
    promtool_check,
    samples,
    value,
)

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
        {"val/loss é": 1.0, "log loss": math.nan, "accuracy": 0.5},
    )
    _run(client, experiment_id, "no-metrics", t0 + 50_000, {})
    model = f"exporter-model-{suffix}"
    client.create_registered_model(model)
    for run_id in (forest, failed):
        client.create_model_version(model, f"runs:/{run_id}/model", run_id=run_id)
    client.set_registered_model_alias(model, "champion", "1")
    client.set_registered_model_alias(model, "challenger", "2")
    return World(experiment, empty, model, forest, odd)


def requests_served(ops_url: str) -> float:
    """HTTP requests an MLflow server answered so far (its metrics, on the launcher's ops port)."""
    _, text = get(f"{ops_url}/metrics")
    return sum(v for (name, _), v in samples(text).items() if name == "mlflow_http_request_total")


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
    before = requests_served(mlflow_server.ops_url)
    own = requests_served(mlflow_server.ops_url) - before  # whether reading counts itself
    before = requests_served(mlflow_server.ops_url)
    state = refresher.refresh_once()
    served = requests_served(mlflow_server.ops_url) - before - own
    assert state.up, state.last_error
    registry = build_registry(lambda: state)

    forest = client.get_run(world.forest_run_id)
    labels = {"experiment": world.experiment, "run_name": "RandomForestClassifier"}
    for key, expected in forest.data.metrics.items():
        assert registry.get_sample_value(f"mlflow_run_{key}_ratio", labels) == expected
    # the older run's f1_macro is not mixed in: only the latest finished run counts
    assert registry.get_sample_value("mlflow_run_f1_macro_ratio", labels) is None
    start = registry.get_sample_value("mlflow_run_start_timestamp_seconds", labels)
    assert start == forest.info.start_time / 1000

    odd = {"experiment": world.experiment, "run_name": ODD_RUN_NAME}
    nan = registry.get_sample_value("mlflow_run_log_loss", odd)
    assert nan is not None
    assert math.isnan(nan)
    # "val/loss é" has no known unit: left out, and counted
    unknown = {"kind": "unknown_metrics"}
    assert registry.get_sample_value("wine_exporter_dropped_items", unknown) == 1
    no_metrics = {"experiment": world.experiment, "run_name": "no-metrics"}
    assert registry.get_sample_value("mlflow_run_start_timestamp_seconds", no_metrics)
    assert (
        registry.get_sample_value("mlflow_run_accuracy_ratio", {**labels, "run_name": "SVC"})
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
    champion_labels = {"model": world.model, "alias": "champion"}
    assert registry.get_sample_value("mlflow_model_alias_accuracy_ratio", champion_labels) == 0.95
    versions = client.search_model_versions(f"name = '{world.model}'")
    assert registry.get_sample_value("mlflow_model_versions", {"model": world.model}) == len(
        versions
    )
    assert registry.get_sample_value("mlflow_up") == 1
    # what the exporter says it asked is what the server answered
    assert registry.get_sample_value("wine_exporter_last_refresh_requests") == served
    # every run of these small experiments was read: the counts are complete
    assert registry.get_sample_value("wine_exporter_run_cap_reached") == 0
    assert registry.get_sample_value("wine_exporter_last_refresh_runs") == 6


def test_exporter_process_serves_promtool_valid_metrics_from_real_data(
    mlflow_server: MlflowServer, world: World, tmp_path: Path
) -> None:
    exporter = start_exporter(
        mlflow_server.url,
        tmp_path,
        EXPORTER_REFRESH_INTERVAL="1",
        WINE_MIN_ACCURACY="0.87",
    )
    try:
        labels = {"experiment": world.experiment, "run_name": "RandomForestClassifier"}
        text = exporter.wait_for("mlflow_run_accuracy_ratio", 0.95, labels)
        assert promtool_check(text) == ""
        assert samples(text)  # parses with no duplicate series
        assert value(text, "mlflow_up") == 1
        assert value(text, "wine_champion_accuracy_floor_ratio") == 0.87
        champion = {"model": world.model, "alias": "champion"}
        assert value(text, "mlflow_model_alias_accuracy_ratio", **champion) == 0.95
        assert (value(text, "wine_exporter_refreshes_total") or 0) >= 1
        assert (value(text, "wine_exporter_last_refresh_success_timestamp_seconds") or 0) > 1.7e9
        assert value(text, "process_resident_memory_bytes")
        # no name of MLflow's own /metrics (mlflow_exporter_info, mlflow_http_*), one unit
        # per name, a timestamp rather than an age, and no _created series
        names = {name for name, _ in samples(text)}
        assert not {n for n in names if n.startswith(("mlflow_exporter_", "mlflow_http_"))}
        assert not {n for n in names if n.endswith(("_metric", "_age_seconds", "_created"))}
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
        self.server.stop()

    def crash(self) -> None:
        """Kills the server and its workers at once, as a crash or an OOM kill would."""
        os.killpg(self.server.process.pid, signal.SIGKILL)
        self.server.process.wait(10)

    def start(self) -> None:
        self.server = start_mlflow_server(self.workdir, self.store, self.port)

    def requests_served(self) -> float:
        """HTTP requests the server answered so far (its metrics, on the launcher's ops port)."""
        return requests_served(self.server.ops_url)


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


def _newest(client: MlflowClient, experiment_id: str, count: int) -> list[Run]:
    return client.search_runs(
        [experiment_id], order_by=["attributes.start_time DESC"], max_results=count
    )


def _assert_latest_runs_exported(text: str, experiment: str, newest: list[Run]) -> None:
    """Each run name's newest finished run (among ``newest``) is what the exporter shows."""
    latest: dict[str, Run] = {}
    for run in newest:
        if run.info.status == FINISHED:
            latest.setdefault(run.info.run_name, run)
    assert latest
    for name, run in latest.items():
        labels = {"experiment": experiment, "run_name": name}
        for key, expected in run.data.metrics.items():
            assert value(text, f"mlflow_run_{unit_name(key)}", **labels) == expected
        assert value(text, "mlflow_run_start_timestamp_seconds", **labels) == (
            run.info.start_time / 1000
        )


def test_more_runs_than_the_cap_read_only_the_newest_and_scrapes_cost_nothing(
    own_server: RestartableServer, thousand_runs: str
) -> None:
    window, page = 120, 50
    app = create_app(
        _settings(
            own_server.url,
            thousand_runs,
            EXPORTER_REFRESH_INTERVAL=3600,
            EXPORTER_RUNS_PER_EXPERIMENT=window,
            EXPORTER_PAGE_SIZE=page,
        ),
        start_refresher=False,
    )
    refresher: Refresher = app.extensions[EXTENSION]
    mlflow = MlflowClient(own_server.url)
    experiment = mlflow.get_experiment_by_name(thousand_runs)
    assert experiment is not None
    experiment_id = experiment.experiment_id

    def refresh(expected_requests: int) -> str:
        before = own_server.requests_served()
        own = own_server.requests_served() - before  # whether reading the count counts itself
        before = own_server.requests_served()
        state: ExporterState = refresher.refresh_once()
        served = own_server.requests_served() - before - own
        assert state.up, state.last_error
        assert state.snapshot is not None
        assert state.snapshot.runs_read == window  # not the 1,000 runs of the experiment
        assert state.snapshot.requests == served == expected_requests
        response = app.test_client().get("/metrics")
        assert response.status_code == 200
        return response.get_data(as_text=True)

    # experiments, three pages of runs (50 + 50 + 20), registered models
    text = refresh(1 + 3 + 1)
    assert value(text, "wine_exporter_run_cap_reached") == 1
    assert value(text, "wine_exporter_run_window") == window
    assert value(text, "wine_exporter_last_refresh_runs") == window
    counts = {
        status: value(text, "mlflow_experiment_runs", experiment=thousand_runs, status=status)
        for status in ("FINISHED", "RUNNING", "FAILED")
    }
    assert counts == {"FINISHED": window, "RUNNING": 0, "FAILED": 0}  # the newest runs' mix
    _assert_latest_runs_exported(text, thousand_runs, _newest(mlflow, experiment_id, window))
    series = [
        k
        for k in samples(text)
        if k[0].startswith("mlflow_run_") and k[0] != "mlflow_run_start_timestamp_seconds"
    ]
    assert len(series) == len(FAMILIES) * 3  # bounded by names x metrics, not by runs
    assert promtool_check(text) == ""

    # Scrapes never reach MLflow.
    before = own_server.requests_served()
    own = own_server.requests_served() - before
    before = own_server.requests_served()
    for _ in range(50):
        assert app.test_client().get("/metrics").status_code == 200
    assert own_server.requests_served() - before - own == 0

    # Newer runs: a failed one and a new finished SVC show on the next refresh.
    start = int(time.time() * 1000) + 60_000
    _run(mlflow, experiment_id, "SVC", start, {"accuracy": 0.5, "f1_macro": 0.5}, "FAILED")
    svc = _run(mlflow, experiment_id, "SVC", start + 1000, {"accuracy": 0.99, "log_loss": 0.01})
    _run(mlflow, experiment_id, "SVC", start + 2000, {"accuracy": 0.1}, None)  # running
    text = refresh(1 + 3 + 1)
    svc_labels = {"experiment": thousand_runs, "run_name": "SVC"}
    assert value(text, "mlflow_run_accuracy_ratio", **svc_labels) == 0.99
    assert value(text, "mlflow_run_f1_macro_ratio", **svc_labels) is None
    counts = {
        status: value(text, "mlflow_experiment_runs", experiment=thousand_runs, status=status)
        for status in ("FINISHED", "RUNNING", "FAILED")
    }
    assert counts == {"FINISHED": window - 2, "RUNNING": 1, "FAILED": 1}
    _assert_latest_runs_exported(text, thousand_runs, _newest(mlflow, experiment_id, window))

    # Deleted runs: the newest 150 go; the next refresh shows the newest that remain.
    for run in _newest(mlflow, experiment_id, 150):
        mlflow.delete_run(run.info.run_id)
    assert mlflow.get_run(svc).info.lifecycle_stage == "deleted"
    # the search bounded by the last window's oldest start finds none: one more search
    text = refresh(1 + 1 + 3 + 1)
    _assert_latest_runs_exported(text, thousand_runs, _newest(mlflow, experiment_id, window))
    assert value(text, "mlflow_experiment_runs", experiment=thousand_runs, status="FINISHED") == (
        window
    )


def test_outage_serves_the_last_snapshot_and_recovers_by_itself(
    own_server: RestartableServer, tmp_path: Path
) -> None:
    experiment = "outage"
    experiment_id = MlflowClient(own_server.url).create_experiment(experiment)
    insert_finished_runs(own_server.store["MLFLOW_BACKEND_STORE_URI"], experiment_id, 10)
    exporter = start_exporter(
        own_server.url,
        tmp_path,
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
        success = "wine_exporter_last_refresh_success_timestamp_seconds"
        last_read = value(down, success) or 0
        assert value(later, success) == last_read  # the snapshot served is not refreshed
        assert time.time() - last_read >= 0.9  # so its age, time() - timestamp, grows
        assert (value(later, "wine_exporter_refresh_errors_total") or 0) >= 1
        status, body = get(f"{exporter.url}/healthz")
        assert status == 200
        assert '"status":"mlflow unreachable"' in body

        own_server.start()
        up = exporter.wait_for("mlflow_up", 1)
        assert time.time() - (value(up, success) or 0) < 5
        assert value(up, "mlflow_experiment_runs", **runs) == 10
        assert promtool_check(up) == ""
        log = exporter.log()
        assert "MLflow refresh failed, serving the last snapshot" in log
        assert "MLflow reachable again" in log
    finally:
        exporter.stop()
