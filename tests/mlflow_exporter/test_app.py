"""The Flask app: scrapes render the last snapshot, faults leave it in place, health in JSON."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
from flask import Flask

from mlflow_exporter.app import EXTENSION, create_app
from mlflow_exporter.refresher import Refresher
from mlflow_exporter.settings import ExporterSettings
from mlflow_exporter.snapshot import LatestRun, Snapshot
from tests.mlflow_exporter.conftest import Clock, ScriptedSource
from tests.mlflow_exporter.support import value
from wine_mlops.settings import DEFAULT_MIN_ACCURACY
from wine_mlops.waiting import wait_until

ACCURACY = {"experiment": "wine-classifier", "run_name": "RandomForestClassifier"}
SUCCESS = "wine_exporter_last_refresh_success_timestamp_seconds"


def app_for(source: ScriptedSource, clock: Clock, **settings: float) -> tuple[Flask, Refresher]:
    app = create_app(
        ExporterSettings.model_validate(settings),
        source=source,
        clock=clock,
        start_refresher=False,
    )
    return app, app.extensions[EXTENSION]


def scrape(app: Flask) -> str:
    response = app.test_client().get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain; version=0.0.4")
    return response.get_data(as_text=True)


def test_scrapes_render_the_snapshot_without_reading_the_source(
    snapshot: Snapshot, clock: Clock
) -> None:
    source = ScriptedSource(snapshot)
    app, refresher = app_for(source, clock)
    refresher.refresh_once()
    for _ in range(50):
        text = scrape(app)
    assert source.reads == 1
    assert value(text, "mlflow_run_accuracy_ratio", **ACCURACY) == 0.97
    assert value(text, "mlflow_up") == 1


def test_mlflow_outage_keeps_the_last_snapshot_and_recovery_is_automatic(
    snapshot: Snapshot, clock: Clock
) -> None:
    source = ScriptedSource(
        snapshot, ConnectionError("refused"), ConnectionError("refused"), snapshot
    )
    app, refresher = app_for(source, clock)
    refresher.refresh_once()
    clock.now += 15
    refresher.refresh_once()
    first = scrape(app)
    clock.now += 15
    refresher.refresh_once()
    second = scrape(app)
    assert value(second, "mlflow_up") == 0
    assert value(second, "mlflow_run_accuracy_ratio", **ACCURACY) == 0.97
    assert value(second, "wine_exporter_refresh_errors_total") == 2
    assert value(first, SUCCESS) == clock.now - 30  # the first refresh's snapshot stays
    assert value(second, SUCCESS) == clock.now - 30
    health = app.test_client().get("/healthz")
    assert health.status_code == 200  # the exporter itself is fine
    assert health.json is not None
    assert health.json["status"] == "mlflow unreachable"
    assert health.json["mlflow_reachable"] is False
    assert "refused" in health.json["last_error"]

    clock.now += 15
    refresher.refresh_once()
    recovered = scrape(app)
    assert value(recovered, "mlflow_up") == 1
    assert value(recovered, SUCCESS) == clock.now
    assert app.test_client().get("/healthz").json == {
        **health.json,
        "status": "ok",
        "mlflow_reachable": True,
        "last_success": "2023-11-14T22:14:05+00:00",
        "snapshot_age_seconds": 0.0,
        "last_refresh_duration_seconds": refresher.state.last_duration,
        "refreshes": 4,
        "refresh_errors": 2,
    }


def test_before_the_first_refresh_metrics_answer_and_health_says_starting(clock: Clock) -> None:
    app, _ = app_for(ScriptedSource(RuntimeError("never read")), clock)
    text = scrape(app)
    assert value(text, "mlflow_up") == 0
    assert "mlflow_run_" not in text
    health = app.test_client().get("/healthz")
    assert health.status_code == 200
    assert health.json is not None
    assert health.json["status"] == "starting"


def test_openmetrics_is_served_to_clients_that_ask_for_it(snapshot: Snapshot, clock: Clock) -> None:
    app, refresher = app_for(ScriptedSource(snapshot), clock)
    refresher.refresh_once()
    response = app.test_client().get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert response.content_type.startswith("application/openmetrics-text")
    assert response.get_data(as_text=True).endswith("# EOF\n")


def test_the_background_refresher_reads_every_interval(snapshot: Snapshot) -> None:
    source = ScriptedSource(snapshot)
    app = create_app(
        ExporterSettings.model_validate(
            {"EXPORTER_REFRESH_INTERVAL": 0.05, "EXPORTER_MIN_PAUSE": 0}
        ),
        source=source,
    )
    refresher: Refresher = app.extensions[EXTENSION]
    try:
        wait_until(lambda: source.reads >= 3, "three refreshes", timeout=10, interval=0.02)
        assert refresher.alive
        assert app.test_client().get("/healthz").json["status"] == "ok"  # type: ignore[index]
    finally:
        refresher.stop()


def test_a_refresh_longer_than_the_interval_is_followed_by_the_minimum_pause(
    snapshot: Snapshot,
) -> None:
    """MLflow gets a rest after every refresh, even when refreshes overrun the interval."""
    starts: list[float] = []
    ends: list[float] = []

    class SlowSource:
        """Stands in for an MLflow that takes longer to read than the interval."""

        def read(self) -> Snapshot:
            starts.append(time.monotonic())
            time.sleep(0.2)
            ends.append(time.monotonic())
            return snapshot

    app = create_app(
        ExporterSettings.model_validate(
            {"EXPORTER_REFRESH_INTERVAL": 0.05, "EXPORTER_MIN_PAUSE": 0.5}
        ),
        source=SlowSource(),
    )
    refresher: Refresher = app.extensions[EXTENSION]
    try:
        wait_until(lambda: len(starts) >= 4, "four refreshes", timeout=20, interval=0.05)
    finally:
        refresher.stop()
    gaps = [start - end for start, end in zip(starts[1:], ends, strict=False)]
    assert min(gaps) >= 0.45  # not the 0.05 s interval: the 0.5 s pause
    assert refresher.pause_after(0.2) == 0.5
    assert app.test_client().get("/healthz").json["status"] == "ok"  # type: ignore[index]


@pytest.mark.parametrize(
    ("setting", "floor"), [("0.85", 0.85), ("", DEFAULT_MIN_ACCURACY)], ids=["set", "blank"]
)
def test_the_accuracy_floor_is_published_from_wine_min_accuracy(
    monkeypatch: pytest.MonkeyPatch, clock: Clock, setting: str, floor: float
) -> None:
    monkeypatch.setenv("WINE_MIN_ACCURACY", setting)
    app = create_app(
        ExporterSettings(),
        source=ScriptedSource(ConnectionError("refused")),
        clock=clock,
        start_refresher=False,
    )
    text = scrape(app)  # also before MLflow was ever read: the alert compares with it
    assert value(text, "wine_champion_accuracy_floor_ratio") == floor
    assert "# TYPE wine_champion_accuracy_floor_ratio gauge" in text


def forest_accuracy(text: str) -> list[str]:
    """The values of the forest's accuracy series in an exposition (any format)."""
    return [
        line.rsplit(" ", 1)[1]
        for line in text.splitlines()
        if line.startswith("mlflow_run_accuracy_ratio{")
        and 'run_name="RandomForestClassifier"' in line
    ]


def test_each_scrape_shows_the_latest_snapshot_in_either_format(
    snapshot: Snapshot, clock: Clock
) -> None:
    newer = replace(
        snapshot,
        experiments=(
            replace(
                snapshot.experiments[1],
                latest_runs=(
                    LatestRun(
                        "RandomForestClassifier", 1_700_000_000.0, (("accuracy_ratio", 0.99),)
                    ),
                ),
            ),
        ),
    )
    app, refresher = app_for(ScriptedSource(snapshot, newer), clock)
    openmetrics = {"Accept": "application/openmetrics-text; version=1.0.0"}
    refresher.refresh_once()
    assert value(scrape(app), "mlflow_run_accuracy_ratio", **ACCURACY) == 0.97
    first = app.test_client().get("/metrics", headers=openmetrics).get_data(as_text=True)
    assert forest_accuracy(first) == ["0.97"]
    clock.now += 15
    refresher.refresh_once()
    assert value(scrape(app), "mlflow_run_accuracy_ratio", **ACCURACY) == 0.99
    assert value(scrape(app), SUCCESS) == clock.now
    clock.now += 7
    refresher.refresh_once()
    assert value(scrape(app), SUCCESS) == clock.now  # live, not cached with the snapshot
    second = app.test_client().get("/metrics", headers=openmetrics).get_data(as_text=True)
    assert forest_accuracy(second) == ["0.99"]
    assert second.count("# EOF") == 1
    assert second.endswith("# EOF\n")
