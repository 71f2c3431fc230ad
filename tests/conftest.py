"""Fixtures shared by the test suite: real MLflow servers on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from devstack import MlflowServer, auth_env, postgres_server, start_mlflow_server


@pytest.fixture(scope="session", autouse=True)
def _mlflow_admin_login() -> Iterator[None]:
    """MLflow clients of the test session (and processes it starts) log in as the admin.

    Every test server runs MLflow's basic-auth; tests of least privilege pass the service
    users' logins explicitly.
    """
    with pytest.MonkeyPatch.context() as patch:
        for key, value in auth_env("admin").items():
            patch.setenv(key, value)
        yield


@pytest.fixture
def mlflow_process_uri(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Sets MLflow's process-wide tracking URI the way a fresh process finds it: from
    ``MLFLOW_TRACKING_URI``, nothing cached (undone after the test)."""

    def point_at(uri: str) -> None:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        monkeypatch.setattr("mlflow.tracking._tracking_service.utils._tracking_uri", None)

    return point_at


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
        server.stop()
        return
    with postgres_server() as pg:
        server = start_mlflow_server(workdir, pg.env)
        yield server
        server.stop()
