"""Fixtures shared by the test suite: real MLflow servers on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.processes import MlflowServer, postgres_server, start_mlflow_server, stop


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def mlflow_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MlflowServer]:
    """A real tracking server (with registry and artifact proxy), once per backend store."""
    workdir = tmp_path_factory.mktemp(f"mlflow-{request.param}")
    if request.param == "sqlite":
        server = start_mlflow_server(
            workdir, {"MLFLOW_BACKEND_STORE_URI": f"sqlite:///{workdir / 'mlflow.db'}"}
        )
        yield server
        stop(server.process)
        return
    with postgres_server() as pg:
        server = start_mlflow_server(workdir, pg.env)
        yield server
        stop(server.process)
