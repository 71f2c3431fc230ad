"""The Flask application: ``/metrics`` renders the last snapshot, ``/healthz`` the state."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, jsonify, request

from mlflow_exporter.collectors import Exposition
from mlflow_exporter.refresher import Refresher, SnapshotSource
from mlflow_exporter.settings import ExporterSettings

#: Key of the refresher in ``app.extensions``.
EXTENSION = "mlflow_exporter"


def _iso(timestamp: float | None) -> str | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC).isoformat()


def create_app(
    settings: ExporterSettings,
    *,
    source: SnapshotSource | None = None,
    clock: Callable[[], float] = time.time,
    start_refresher: bool = True,
) -> Flask:
    """Builds the exporter's Flask application.

    Args:
        settings: The exporter settings.
        source: Where snapshots come from; by default an
            :class:`~mlflow_exporter.source.MlflowSource` for ``settings``.
        clock: The wall clock (Unix seconds).
        start_refresher: Start the background refresher now (its first refresh runs at
            once). Tests may pass False and call ``refresh_once()`` themselves.

    Returns:
        The application; its refresher is ``app.extensions["mlflow_exporter"]``.
    """
    if source is None:
        from mlflow_exporter.source import MlflowSource

        source = MlflowSource(settings)
    refresher = Refresher(
        source, settings.refresh_interval_seconds, clock, settings.min_pause_seconds
    )
    exposition = Exposition(lambda: refresher.state, settings.min_accuracy)

    app = Flask(__name__)
    app.extensions[EXTENSION] = refresher

    @app.get("/metrics")
    def metrics() -> Response:
        body, content_type = exposition.render(request.headers.get("Accept", ""))
        return Response(body, content_type=content_type)

    @app.get("/healthz")
    def healthz() -> tuple[Response, int]:
        state = refresher.state
        snapshot = state.snapshot
        if refresher.died:
            status = "refresher stopped"
        elif state.refreshes == 0:
            status = "starting"
        elif not state.up:
            status = "mlflow unreachable"
        else:
            status = "ok"
        body: dict[str, Any] = {
            "status": status,
            "mlflow_reachable": state.up,
            "refresh_interval_seconds": settings.refresh_interval_seconds,
            "last_success": _iso(state.last_success),
            "snapshot_age_seconds": (
                None if state.last_success is None else round(clock() - state.last_success, 3)
            ),
            "last_refresh_duration_seconds": state.last_duration,
            "refreshes": state.refreshes,
            "refresh_errors": state.errors,
            "last_error": state.last_error,
            "experiments": len(snapshot.experiments) if snapshot else 0,
            "runs": snapshot.runs_read if snapshot else 0,
            "models": len(snapshot.models) if snapshot else 0,
            "requests_per_refresh": snapshot.requests if snapshot else None,
            "run_cap_reached": snapshot.run_cap_reached if snapshot else None,
        }
        # The exporter is healthy while it refreshes; MLflow's own state is in the body
        # and in mlflow_up, so an MLflow outage does not restart the exporter.
        return jsonify(body), 503 if refresher.died else 200

    @app.get("/")
    def index() -> Response:
        return Response(
            "MLflow exporter: /metrics (Prometheus), /healthz (JSON state)\n",
            content_type="text/plain; charset=utf-8",
        )

    if start_refresher:
        refresher.start()
    return app
