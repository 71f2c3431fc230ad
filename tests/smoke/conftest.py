"""Smoke tests of a deployed stack, run by ``make smoke`` (the Jenkinsfile's "Smoke test" stage).

They run after a deploy and a training, against the services' URLs, and check whichever
services are deployed::

    make smoke                       # the compose project of COMPOSE_PROJECT_NAME, ENV_FILE
    SMOKE_MLFLOW_SERVER_URL=http://127.0.0.1:5000 .venv/bin/pytest tests/smoke

Where the URLs come from:

- By default, from ``docker compose port`` (the host addresses a person opens) of the project
  that ``COMPOSE_PROJECT_NAME`` and ``ENV_FILE`` name. A service without a container in the
  project (Grafana in an ``AIRGAP=1`` stack) is skipped; one with a container must pass.
  ``SMOKE_VIA_SERVICE_NAMES=1`` (set in the Jenkins agent image, which runs inside the compose
  network) reaches the services by their compose names instead.
- When any ``SMOKE_<SERVICE>_URL`` is set (``SMOKE_MLFLOW_SERVER_URL``,
  ``SMOKE_PREDICTION_API_URL``, ``SMOKE_MLFLOW_EXPORTER_URL``, ``SMOKE_PROMETHEUS_URL``,
  ``SMOKE_GRAFANA_URL``, ``SMOKE_ALERTMANAGER_URL``), those URLs: a service without one is
  skipped.

The MLflow login is ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` as pytest finds
them when it starts; otherwise the read-only ``prediction-api`` user with
``MLFLOW_PREDICTION_API_PASSWORD`` from ``ENV_FILE``. ``WINE_MODEL_NAME``,
``WINE_CHAMPION_ALIAS`` and ``WINE_MIN_ACCURACY`` apply as in the services;
``SMOKE_WAIT_SECONDS`` (60) bounds the wait for facts that settle shortly after a deploy.

At the end, ``summary.txt`` (next to the ``--junitxml`` file, else in ``reports/``) holds the
one-line build summary that ``make summary`` prints: verdict, champion, accuracy, URLs.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from wine_mlops.settings import MlflowSettings
from wine_mlops.waiting import wait_until

#: Container port of each service the smoke tests know.
SERVICE_PORTS: dict[str, int] = {
    "mlflow-server": 5000,
    "prediction-api": 7654,
    "mlflow-exporter": 8000,
    "prometheus": 9090,
    "grafana": 3000,
    "alertmanager": 9093,
}

#: The test's accuracy metric that training logs on every candidate run.
ACCURACY_METRIC = "accuracy"


@dataclass
class Smoke:
    """What the smoke session found: its MLflow login at start, the champion, the URLs."""

    login: tuple[str, str] | None
    started: bool = False
    public_urls: dict[str, str] = field(default_factory=dict)
    champion: str | None = None


SMOKE = pytest.StashKey[Smoke]()


def _env_file() -> str | None:
    return os.environ.get("ENV_FILE") or None


def _login_at_start() -> tuple[str, str] | None:
    """The MLflow login the smoke tests use (see the module docstring)."""
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    password = os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:
        return user, password
    env_file = _env_file()
    if env_file and os.path.exists(env_file):
        for line in Path(env_file).read_text().splitlines():
            key, _, value = line.strip().partition("=")
            if key == "MLFLOW_PREDICTION_API_PASSWORD" and value:
                return "prediction-api", value
    return None


def pytest_configure(config: pytest.Config) -> None:
    """Reads the login before any fixture runs (the test suite's own fixtures set another)."""
    config.stash[SMOKE] = Smoke(login=_login_at_start())


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Writes ``summary.txt``: verdict, champion and the URLs to open."""
    smoke = session.config.stash.get(SMOKE, None)
    if smoke is None or not smoke.started:  # no smoke test ran (another folder, --collect-only)
        return
    failed = session.testsfailed
    verdict = "smoke passed" if not failed else f"smoke FAILED ({failed} tests)"
    parts = [verdict, smoke.champion or "no champion"]
    if smoke.public_urls:
        parts.append(", ".join(f"{name} {url}" for name, url in smoke.public_urls.items()))
    xml_path = session.config.getoption("xmlpath", None)
    reports = Path(xml_path).parent if xml_path else Path("reports")
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "summary.txt").write_text("; ".join(parts) + "\n")


@dataclass(frozen=True)
class Deployment:
    """The deployed services and where the smoke tests reach them."""

    services: frozenset[str]
    urls: dict[str, str]
    source: str

    def url(self, service: str) -> str:
        """The base URL of a deployed service; skips the test when it is not deployed."""
        if service not in self.services:
            reason = f"{service} is not part of the deployed stack ({self.source})"
            if service == "grafana" and os.environ.get("AIRGAP") == "1":
                reason += "; AIRGAP=1 stacks have no Grafana (no air-gapped image exists)"
            pytest.skip(reason)
        url = self.urls.get(service)
        if not url:
            pytest.fail(
                f"{service} is deployed but has no URL: is it running, with its port "
                f"{SERVICE_PORTS[service]} published?"
            )
        return url.rstrip("/")


def _compose(*args: str) -> subprocess.CompletedProcess[str]:
    env_file = _env_file()
    command = ["docker", "compose", *(["--env-file", env_file] if env_file else []), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def _compose_public_url(service: str, port: int) -> str | None:
    """The host URL of a service's published port, or None when it is not published."""
    result = _compose("port", service, str(port))
    address = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    if result.returncode != 0 or not address or address.endswith(":0"):
        return None
    host, _, host_port = address.rpartition(":")
    if host in ("0.0.0.0", "::", "[::]", ""):  # noqa: S104 (reading, not binding)
        host = "127.0.0.1"
    return f"http://{host}:{host_port}"


def _from_compose() -> tuple[Deployment, dict[str, str]]:
    project = os.environ.get("COMPOSE_PROJECT_NAME") or "wine-mlops"
    listed = _compose("ps", "--all", "--services")
    if listed.returncode != 0:
        pytest.fail(f"docker compose cannot list the services of {project}: {listed.stderr}")
    services = frozenset(line.strip() for line in listed.stdout.splitlines() if line.strip())
    if "mlflow-server" not in services:  # every version of the stack has it
        pytest.fail(f"no mlflow-server is deployed in {project} (services: {sorted(services)})")
    via_names = os.environ.get("SMOKE_VIA_SERVICE_NAMES") == "1"
    urls: dict[str, str] = {}
    public: dict[str, str] = {}
    for service, port in SERVICE_PORTS.items():
        if service not in services:
            continue
        address = _compose_public_url(service, port)
        if address:
            public[service] = address
        url = f"http://{service}:{port}" if via_names else address
        if url:
            urls[service] = url
    return Deployment(services, urls, f"compose project {project}"), public


def _explicit_urls() -> dict[str, str]:
    urls = {}
    for service in SERVICE_PORTS:
        url = os.environ.get(f"SMOKE_{service.upper().replace('-', '_')}_URL")
        if url:
            urls[service] = url
    return urls


@pytest.fixture(scope="session")
def deployment(pytestconfig: pytest.Config) -> Deployment:
    """The services to check: from the ``SMOKE_*_URL`` variables, else from docker compose."""
    pytestconfig.stash[SMOKE].started = True
    urls = _explicit_urls()
    if urls:
        found = Deployment(frozenset(urls), urls, "not among the SMOKE_<SERVICE>_URL variables")
        public = urls
    else:
        found, public = _from_compose()
    pytestconfig.stash[SMOKE].public_urls = public
    return found


@pytest.fixture(scope="session")
def settings() -> MlflowSettings:
    """The stack's names and accuracy floor, read as the services read them."""
    return MlflowSettings()


@pytest.fixture(scope="session")
def wait_seconds() -> float:
    """How long to wait for facts that settle after a deploy (``SMOKE_WAIT_SECONDS``)."""
    return float(os.environ.get("SMOKE_WAIT_SECONDS") or 60)


@pytest.fixture(scope="session")
def mlflow_client(deployment: Deployment, pytestconfig: pytest.Config) -> Iterator[MlflowClient]:
    """An MLflow client of the deployed server, logged in as the smoke tests' user."""
    url = deployment.url("mlflow-server")
    login = pytestconfig.stash[SMOKE].login
    with pytest.MonkeyPatch.context() as patch:
        # MLflow's client reads its login from the environment on every request.
        if login is None:
            patch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
            patch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
        else:
            patch.setenv("MLFLOW_TRACKING_USERNAME", login[0])
            patch.setenv("MLFLOW_TRACKING_PASSWORD", login[1])
        # A smoke test reports a server that does not answer; it does not wait minutes for it.
        patch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        patch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        yield MlflowClient(tracking_uri=url, registry_uri=url)


@dataclass(frozen=True)
class Champion:
    """The registered version the champion alias points to, and its run's test accuracy."""

    version: str
    run_id: str
    accuracy: float | None


@pytest.fixture(scope="session")
def champion(
    mlflow_client: MlflowClient, settings: MlflowSettings, pytestconfig: pytest.Config
) -> Champion:
    """The champion, read from the registry and its run's metrics (fails when there is none)."""
    name, alias = settings.model_name, settings.champion_alias
    try:
        version = mlflow_client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.get_http_status_code() not in (400, 404):
            raise
        pytest.fail(f"no '{alias}' alias on model '{name}': has a training session run? ({exc})")
    assert version.run_id, f"{name} v{version.version} has no run"
    metrics = mlflow_client.get_run(version.run_id).data.metrics
    found = Champion(str(version.version), version.run_id, metrics.get(ACCURACY_METRIC))
    accuracy = "unknown" if found.accuracy is None else f"{found.accuracy:.4f}"
    pytestconfig.stash[SMOKE].champion = f"champion {name} v{found.version}, accuracy {accuracy}"
    return found


def eventually(check: Callable[[], None], what: str, timeout: float) -> None:
    """Runs ``check`` until it passes, for facts that settle shortly after a deploy.

    A failed assertion or an HTTP error means "not yet"; when ``timeout`` seconds have passed,
    the last one is raised, so the report says what was still wrong.
    """
    errors: list[Exception] = []

    def passes() -> bool:
        try:
            check()
        except (AssertionError, requests.RequestException) as exc:
            errors.append(exc)
            return False
        return True

    try:
        wait_until(passes, what, timeout=timeout, interval=2)
    except TimeoutError:
        raise errors[-1] from None
