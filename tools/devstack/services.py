"""The stack's services as local processes: the MLflow server, the API, the exporter, Prometheus.

Each ``start_*`` function starts one service on 127.0.0.1, waits (``wait_until_healthy``)
until its health endpoint answers and returns a :class:`Service` handle (its URL, process and
log; ``stop()``). A service that does not come up is stopped and :class:`StartupError` carries
the end of its log. PostgreSQL is in :mod:`devstack.postgres`.

By default a service inherits the caller's environment without its own variables (the
caller's settings never leak into a throw-away service); ``base_env=os.environ`` passes them
(``make dev``). MLflow logins are throw-away ones made once per process (:data:`THROWAWAY`)
unless a :class:`Logins` is given.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from prometheus_client.parser import text_string_to_metric_families

from wine_mlops.healthcheck import wait_until_healthy
from wine_mlops.processes import stop_process_group
from wine_mlops.waiting import wait_until

log = logging.getLogger("devstack")

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]

_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now and this process never handed out.

    The kernel may offer the same free port twice in a row; remembering the ports already
    given keeps two servers of one process from being told to share a port.
    """
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


#: The MLflow users of the stack and the server variable holding each one's password.
PASSWORD_VARIABLES: dict[str, str] = {
    "admin": "MLFLOW_ADMIN_PASSWORD",
    "trainer": "MLFLOW_TRAINER_PASSWORD",
    "prediction-api": "MLFLOW_PREDICTION_API_PASSWORD",
    "mlflow-exporter": "MLFLOW_EXPORTER_PASSWORD",
}
_SECRET_KEY = "MLFLOW_FLASK_SECRET_KEY"  # noqa: S105 (the name of a variable)


@dataclass(frozen=True)
class Logins:
    """The MLflow basic-auth logins of a server: a password per user, the Flask secret key."""

    passwords: Mapping[str, str]
    secret_key: str

    @classmethod
    def random(cls) -> Logins:
        """Fresh random passwords for every user of :data:`PASSWORD_VARIABLES`."""
        passwords = {user: secrets.token_urlsafe(18) for user in PASSWORD_VARIABLES}
        return cls(passwords, secrets.token_urlsafe(24))

    @classmethod
    def stored(cls, path: Path) -> Logins:
        """The logins kept in ``path`` (JSON of the server variables), created when missing.

        The admin password is stored in the auth database on first start, so a state
        folder keeps its logins.
        """
        if not path.exists():
            path.touch(mode=0o600)
            made = cls.random()
            path.write_text(json.dumps(made.server_env()))
        stored = json.loads(path.read_text())
        return cls(
            {user: stored[name] for user, name in PASSWORD_VARIABLES.items()}, stored[_SECRET_KEY]
        )

    def server_env(self) -> dict[str, str]:
        """The server's variables: every user's password and the Flask secret key."""
        env = {name: self.passwords[user] for user, name in PASSWORD_VARIABLES.items()}
        return {**env, _SECRET_KEY: self.secret_key}

    def auth_env(self, user: str = "admin") -> dict[str, str]:
        """The MLflow client variables that log in as ``user``."""
        return {"MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": self.passwords[user]}


#: The logins of every throw-away server this process starts (tests, benchmarks).
THROWAWAY = Logins.random()
#: Their passwords, by user.
PASSWORDS: Mapping[str, str] = THROWAWAY.passwords


def auth_env(user: str = "admin") -> dict[str, str]:
    """The MLflow client variables that log in to a throw-away server as ``user``."""
    return THROWAWAY.auth_env(user)


class StartupError(RuntimeError):
    """A service exited or did not answer in time; the message ends with its log."""


@dataclass
class Service:
    """A running service.

    Attributes:
        name: What it is, e.g. ``prediction-api``.
        url: Its base URL.
        process: Its process (the leader of its own process group).
        log_path: Its combined output.
    """

    name: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        """What it printed so far."""
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 60) -> str:
        """The last ``lines`` lines of its log."""
        return "\n".join(self.log().splitlines()[-lines:])

    def stop(self, timeout: float = 15.0) -> None:
        """Stops it and its children (SIGTERM, then SIGKILL after ``timeout`` seconds)."""
        stop_process_group(self.process, timeout)

    def wait_until(
        self,
        condition: Callable[[], T | None],
        what: str,
        timeout: float = 60.0,
        interval: float = 0.2,
    ) -> T:
        """:func:`wine_mlops.waiting.wait_until`, with the end of this service's log in the error.

        Raises:
            TimeoutError: When ``condition`` did not hold in time.
        """
        try:
            return wait_until(condition, what, timeout=timeout, interval=interval)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; {self.name}'s log:\n{self.tail()}") from None


def _without(prefixes: tuple[str, ...]) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


def start_service(
    name: str,
    command: list[str],
    url: str,
    health_path: str,
    env: Mapping[str, str],
    log_path: Path,
    *,
    timeout: float = 60.0,
    cwd: Path | None = None,
) -> Service:
    """Starts ``command`` in its own process group and waits until ``url + health_path`` answers.

    Args:
        name: What it is, for the log lines and errors.
        command: The command line.
        url: Its base URL.
        health_path: The health endpoint's path, e.g. ``/healthz``.
        env: Its whole environment.
        log_path: Where its standard output and error go (appended).
        timeout: Longest wait for health, in seconds.
        cwd: Its working folder.

    Raises:
        StartupError: When it exits or is not healthy in time (it is stopped then).
    """
    log.info("starting %s (log: %s)", name, log_path)
    process = subprocess.Popen(
        command,
        env=dict(env),
        cwd=cwd,
        stdout=open(log_path, "ab"),  # noqa: SIM115 (the child keeps it)
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    service = Service(name, url, process, log_path)
    try:
        wait_until_healthy(f"{url}{health_path}", timeout=timeout, process=process)
    except (RuntimeError, TimeoutError) as exc:
        service.stop()
        raise StartupError(f"{name} did not start ({exc}); {log_path}:\n{service.tail()}") from None
    return service


@dataclass
class MlflowServer(Service):
    """A running ``mlflow server`` (basic-auth) started through the stack's launcher.

    Attributes:
        ops_url: The launcher's ops endpoints (``/readyz``, ``/metrics``), no login.
        logins: Its users' logins.
    """

    ops_url: str = ""
    logins: Logins = field(default_factory=lambda: THROWAWAY)


def start_mlflow_server(
    workdir: Path,
    store_env: Mapping[str, str],
    port: int | None = None,
    ops_port: int | None = None,
    *,
    logins: Logins = THROWAWAY,
    log_path: Path | None = None,
    base_env: Mapping[str, str] | None = None,
) -> MlflowServer:
    """Starts the tracking server on 127.0.0.1 with artifacts under ``workdir``.

    Returns once the launcher is ready: the server answers and the users of ``logins`` exist
    with their grants.

    Args:
        workdir: Folder for artifacts, metrics files, the auth database (SQLite stores) and
            the log; its working folder.
        store_env: Variables choosing the stores (``MLFLOW_BACKEND_STORE_URI``, or the
            PostgreSQL set), plus any other server setting (e.g. ``MLFLOW_WORKERS``).
        port: The port, or a free one.
        ops_port: The ops port, or a free one.
        logins: The users' passwords and the secret key.
        log_path: Its log (default ``workdir/mlflow-server.log``).
        base_env: The environment it inherits (default: the caller's without ``MLFLOW_*``
            and ``POSTGRES_*``).
    """
    port = port or free_port()
    ops_port = ops_port or free_port()
    inherited = _without(("MLFLOW_", "POSTGRES_")) if base_env is None else base_env
    env = {
        **inherited,
        **logins.server_env(),
        "MLFLOW_ARTIFACTS_DESTINATION": str(workdir / "artifacts"),
        "MLFLOW_PROMETHEUS_DIR": str(workdir / "prometheus"),
        **store_env,
        "MLFLOW_HOST": "127.0.0.1",
        "MLFLOW_PORT": str(port),
        "MLFLOW_OPS_PORT": str(ops_port),
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    if "MLFLOW_BACKEND_STORE_URI" in store_env:
        env.setdefault("MLFLOW_AUTH_DATABASE_URI", f"sqlite:///{workdir / 'auth.db'}")
    ops_url = f"http://127.0.0.1:{ops_port}"
    started = start_service(
        "mlflow-server",
        [sys.executable, "-m", "mlflow_server"],
        ops_url,
        "/readyz",
        env,
        log_path or workdir / "mlflow-server.log",
        timeout=120,
        cwd=workdir,
    )
    return MlflowServer(
        started.name, f"http://127.0.0.1:{port}", started.process, started.log_path, ops_url, logins
    )


def start_api(
    tracking_uri: str,
    workdir: Path,
    wait_ready: bool = True,
    *,
    port: int | None = None,
    login: Mapping[str, str] | None = None,
    log_path: Path | None = None,
    base_env: Mapping[str, str] | None = None,
    workers: int | None = None,
    **env: str,
) -> Service:
    """Starts the prediction API (``python -m prediction_api``) on 127.0.0.1.

    Args:
        tracking_uri: The MLflow server it serves models from.
        workdir: Where its log goes (``prediction-api-<port>.log``).
        wait_ready: Wait until ``/readyz`` answers 200 (a model is loaded), else ``/healthz``.
        port: The port, or a free one.
        login: Its MLflow login (default: the throw-away admin's; tests serve models of
            their own names, granted to the admin only).
        log_path: Its log, instead of the one in ``workdir``.
        base_env: The environment it inherits (default: the caller's without ``MLFLOW_*``
            and ``WINE_*``).
        workers: Its worker processes (``WINE_API_WORKERS``; default: the inherited
            variable, else 1); the service's pid is the gunicorn master's.
        **env: More variables (e.g. ``WINE_MODEL_NAME``).
    """
    port = port or free_port()
    inherited = _without(("MLFLOW_", "WINE_")) if base_env is None else base_env
    return start_service(
        "prediction-api",
        [sys.executable, "-m", "prediction_api"],
        f"http://127.0.0.1:{port}",
        "/readyz" if wait_ready else "/healthz",
        {
            **inherited,
            "MLFLOW_TRACKING_URI": tracking_uri,
            "MLFLOW_DISABLE_TELEMETRY": "true",
            **(auth_env("admin") if login is None else login),
            "API_HOST": "127.0.0.1",
            "API_PORT": str(port),
            **({} if workers is None else {"WINE_API_WORKERS": str(workers)}),
            **env,
        },
        log_path or workdir / f"prediction-api-{port}.log",
        timeout=120,
    )


def training_command(
    *args: str, candidates: str | None = None, cv_folds: str | None = "2"
) -> list[str]:
    """The training job's command line (``python -m model_training``) as a user types it.

    Two cross-validation folds by default: the quickest session that still does every step.
    """
    options = [*(["--candidates", candidates] if candidates else [])]
    options += ["--cv-folds", cv_folds] if cv_folds is not None else []
    return [sys.executable, "-m", "model_training", *options, *args]


def training_env(tracking_uri: str, **env: str) -> dict[str, str]:
    """The environment of a training job logging to ``tracking_uri`` (plus ``env``)."""
    return {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        **env,
    }


def run_training(
    tracking_uri: str,
    *args: str,
    candidates: str | None = None,
    cv_folds: str | None = "2",
    **env: str,
) -> subprocess.CompletedProcess[str]:
    """Runs one training session to its end, as a user would; returns exit code and output.

    Args:
        tracking_uri: The MLflow server (or store) the session logs to.
        args: More command-line arguments (``--data FILE``).
        candidates: ``--candidates`` (comma-separated), when given.
        cv_folds: ``--cv-folds`` ("2": the quickest session; None: the setting's default).
            Text like every other argument, so that ``**env`` cannot be mistaken for it.
        env: Settings of the session (``WINE_MODEL_NAME=...``).
    """
    return subprocess.run(
        training_command(*args, candidates=candidates, cv_folds=cv_folds),
        env=training_env(tracking_uri, **env),
        capture_output=True,
        text=True,
        timeout=600,
    )


def series(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Parses a Prometheus exposition into {(sample name, labels): value}.

    Raises:
        ValueError: When a series appears twice.
    """
    found: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            if key in found:
                raise ValueError(f"duplicate series {key}")
            found[key] = sample.value
    return found


def metric_value(text: str, name: str, **labels: str) -> float | None:
    """The value of one series in an exposition, or None when it is absent."""
    return series(text).get((name, frozenset(labels.items())))


@dataclass
class Exporter(Service):
    """A running MLflow exporter (gunicorn master and worker)."""

    def metrics(self) -> str:
        """One scrape of ``/metrics``."""
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=10) as response:  # noqa: S310
            return str(response.read().decode())

    def wait_for(
        self,
        name: str,
        expected: float,
        labels: Mapping[str, str] | None = None,
        timeout: float = 30.0,
    ) -> str:
        """Scrapes until a series has the expected value; returns that scrape.

        Raises:
            TimeoutError: With the last scrape, when the value is not reached in time.
        """
        scraped = [""]

        def reached() -> str | None:
            scraped[0] = self.metrics()
            found = metric_value(scraped[0], name, **(labels or {}))
            return scraped[0] if found == expected else None

        try:
            return wait_until(reached, f"{name}{labels or ''} = {expected}", timeout=timeout)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; last scrape:\n{scraped[0]}") from None


def start_exporter(
    tracking_uri: str,
    workdir: Path,
    *,
    port: int | None = None,
    login: Mapping[str, str] | None = None,
    log_path: Path | None = None,
    base_env: Mapping[str, str] | None = None,
    **env: str,
) -> Exporter:
    """Starts the MLflow exporter (``python -m mlflow_exporter``, gunicorn) on 127.0.0.1.

    Args:
        tracking_uri: The MLflow server it reads.
        workdir: Where its log goes (``mlflow-exporter-<port>.log``).
        port: The port, or a free one.
        login: Its MLflow login (default: the throw-away admin's; tests of the exporter's
            read-only user are in tests/mlflow_server/test_auth.py).
        log_path: Its log, instead of the one in ``workdir``.
        base_env: The environment it inherits (default: the caller's without ``MLFLOW_*``
            and ``EXPORTER_*``).
        **env: More variables (e.g. ``EXPORTER_REFRESH_INTERVAL``).
    """
    port = port or free_port()
    inherited = _without(("EXPORTER_", "MLFLOW_")) if base_env is None else base_env
    started = start_service(
        "mlflow-exporter",
        [sys.executable, "-m", "mlflow_exporter"],
        f"http://127.0.0.1:{port}",
        "/healthz",
        {
            **inherited,
            "MLFLOW_TRACKING_URI": tracking_uri,
            "MLFLOW_DISABLE_TELEMETRY": "true",
            **(auth_env("admin") if login is None else login),
            "EXPORTER_HOST": "127.0.0.1",
            "EXPORTER_PORT": str(port),
            **env,
        },
        log_path or workdir / f"mlflow-exporter-{port}.log",
        timeout=90,
    )
    return Exporter(started.name, started.url, started.process, started.log_path)


def start_prometheus(binary: str, config: Path, workdir: Path, port: int | None = None) -> Service:
    """Starts a Prometheus server with ``config``, its data and log under ``workdir``.

    Args:
        binary: The ``prometheus`` program.
        config: Its configuration file (rule files relative to it).
        workdir: Folder for its time series (``data/``, kept an hour) and its log.
        port: The port, or a free one.
    """
    port = port or free_port()
    return start_service(
        "prometheus",
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            "--storage.tsdb.retention.time=1h",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        f"http://127.0.0.1:{port}",
        "/-/ready",
        os.environ,
        workdir / "prometheus.log",
    )
