"""Real local processes for integration tests: an MLflow server and a PostgreSQL server."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from wine_mlops.healthcheck import wait_until_healthy
from wine_mlops.processes import stop_process_group as stop  # the tests' name for it

REPO = Path(__file__).resolve().parents[2]


_HANDED_OUT: set[int] = set()


def make_env(env_file: Path, secrets_dir: Path) -> None:
    """Runs `make env`'s tool: a fresh env file of random secrets and its secret files."""
    args = ["--env", env_file, "--example", REPO / ".env.example", "--secrets", secrets_dir]
    tool = REPO / "tools/init_env.py"
    subprocess.run([sys.executable, str(tool), *map(str, args)], check=True, capture_output=True)


def compose_config(env_file: Path, secrets_dir: Path, *args: str) -> dict[str, Any]:
    """``docker compose config`` of the repository's stack, as Compose itself reads it.

    Needs the docker CLI with Compose, not a running engine.

    Args:
        env_file: The env file (``--env-file``).
        secrets_dir: Where its secret files are (``SECRETS_DIR``).
        *args: More global options, e.g. ``"--profile", "ci"``.
    """
    if shutil.which("docker") is None:
        pytest.fail("the docker CLI with Compose is needed (.ci/setup-docker.sh installs it)")
    result = subprocess.run(
        ["docker", "compose", "--env-file", str(env_file), *args, "config", "--format", "json"],
        cwd=REPO,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "SECRETS_DIR": str(secrets_dir)},
        capture_output=True,
        text=True,
        check=True,
    )
    config: dict[str, Any] = json.loads(result.stdout)
    return config


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now and this process never handed out.

    The kernel may offer the same free port twice in a row; remembering the ports already
    given keeps two servers of one test from being told to share a port.
    """
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


#: mlflow-db's ensure step: the script the database container runs at every start.
ENSURE_SCRIPT = REPO / "mlflow-db" / "ensure-roles.sh"


@dataclass
class PostgresServer:
    """A throw-away PostgreSQL cluster listening on 127.0.0.1, set up as mlflow-db is.

    Attributes:
        port: Its TCP port on 127.0.0.1 (password logins).
        socket_dir: The folder of its Unix socket (the superuser logs in there without one).
        bindir: PostgreSQL's programs.
        superuser: The superuser (``POSTGRES_USER``), used only by the ensure step and tests.
        superuser_password: Its password (``POSTGRES_PASSWORD``).
        user: The role MLflow logs in as (``MLFLOW_DB_USER``): owner of both databases.
        password: Its password (``MLFLOW_DB_PASSWORD``).
        database: The tracking store's database (``POSTGRES_DB``).
        auth_database: MLflow basic-auth's database (``MLFLOW_AUTH_DB``).
        data_dir: The cluster's folder.
        run_as: The command prefix that runs PostgreSQL's programs as their account.
    """

    port: int
    socket_dir: Path
    bindir: Path
    superuser: str
    superuser_password: str
    user: str
    password: str
    database: str
    auth_database: str
    data_dir: Path = Path()
    run_as: tuple[str, ...] = ()

    @contextlib.contextmanager
    def outage(self) -> Iterator[None]:
        """Stops the server (fast shutdown: clients are cut off) and starts it again after.

        The cluster keeps its data: what a restart of the database container does.
        """
        pg_ctl = [*self.run_as, str(self.bindir / "pg_ctl"), "-D", str(self.data_dir)]
        subprocess.run([*pg_ctl, "stop", "-m", "fast", "-w"], check=True, capture_output=True)
        try:
            yield
        finally:
            options = (
                f"-p {self.port} -c listen_addresses=127.0.0.1 "
                f"-c unix_socket_directories={self.socket_dir} -c fsync=off"
            )
            log = self.socket_dir / "postgres-restarted.log"
            subprocess.run(
                [*pg_ctl, "start", "-w", "-o", options, "-l", str(log)],
                check=True,
                capture_output=True,
                timeout=60,
            )

    @property
    def env(self) -> dict[str, str]:
        """The variables the MLflow server launcher reads (the non-superuser role's login)."""
        return {
            "POSTGRES_HOST": "127.0.0.1",
            "POSTGRES_PORT": str(self.port),
            "POSTGRES_DB": self.database,
            "MLFLOW_DB_USER": self.user,
            "MLFLOW_DB_PASSWORD": self.password,
            "MLFLOW_AUTH_DB": self.auth_database,
        }

    def ensure(self, **overrides: str) -> subprocess.CompletedProcess[str]:
        """Runs mlflow-db's ensure step on this cluster, as the container does at every start.

        The same script (``mlflow-db/ensure-roles.sh``) connects as the superuser over the
        Unix socket. Failures are returned, not raised.

        Args:
            **overrides: Replace its settings, e.g. ``MLFLOW_DB_PASSWORD="new"``.
        """
        env = {
            "PATH": f"{self.bindir}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
            "LANG": "C.UTF-8",
            "PGHOST": str(self.socket_dir),
            "PGPORT": str(self.port),
            "POSTGRES_USER": self.superuser,
            "POSTGRES_PASSWORD": self.superuser_password,
            "POSTGRES_DB": self.database,
            "MLFLOW_DB_USER": self.user,
            "MLFLOW_DB_PASSWORD": self.password,
            "MLFLOW_AUTH_DB": self.auth_database,
            **overrides,
        }
        return subprocess.run(
            ["bash", str(ENSURE_SCRIPT)], env=env, capture_output=True, text=True, timeout=120
        )

    def url(self, database: str | None = None, *, superuser: bool = False) -> str:
        """A SQLAlchemy URI (psycopg2) logging in over TCP as the role, or the superuser."""
        user, password = (
            (self.superuser, self.superuser_password) if superuser else (self.user, self.password)
        )
        return (
            f"postgresql+psycopg2://{quote(user, safe='')}:{quote(password, safe='')}"
            f"@127.0.0.1:{self.port}/{quote(database or self.database, safe='')}"
        )


def postgres_bindir() -> Path | None:
    """Where Debian's PostgreSQL binaries are, or None when PostgreSQL is not installed."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    if candidates:
        return candidates[0].parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


@contextlib.contextmanager
def postgres_server(
    *, superuser: str = "postgres", ensure: bool = True
) -> Iterator[PostgresServer]:
    """Runs a fresh PostgreSQL cluster in a temporary folder, removed afterwards.

    initdb creates it with a superuser; then mlflow-db's ensure step creates the role MLflow
    logs in as and its two databases, as the database container does.

    When run as root the cluster runs as the ``postgres`` account (initdb refuses root); the
    folder is then made under /tmp so that account can reach it.

    Args:
        superuser: The superuser's name (earlier versions of the stack called it ``mlflow``).
        ensure: False skips the ensure step: the cluster then holds only the superuser and
            the maintenance database ``postgres`` (to build an older volume's state first).
    """
    workdir = Path(tempfile.mkdtemp(prefix="wine-pg-"))
    bindir = postgres_bindir()
    if bindir is None:
        raise RuntimeError("PostgreSQL is not installed (Debian package postgresql-15)")
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        account = pwd.getpwnam("postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
        os.chown(workdir, account.pw_uid, account.pw_gid)
    data = workdir / "data"
    server = PostgresServer(
        port=free_port(),
        socket_dir=workdir,
        bindir=bindir,
        superuser=superuser,
        superuser_password=secrets.token_urlsafe(12) + "%@:/",
        user="mlflow_app",
        password=secrets.token_urlsafe(12) + "%@:/'",
        database="mlflow",
        auth_database="mlflow_auth",
        data_dir=workdir / "data",
        run_as=tuple(run_as),
    )
    pwfile = workdir / "pwfile"
    pwfile.write_text(server.superuser_password + "\n")
    if run_as:
        os.chown(pwfile, account.pw_uid, account.pw_gid)
    subprocess.run(
        [
            *run_as,
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            server.superuser,
            "--pwfile",
            str(pwfile),
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--no-sync",  # a throw-away cluster
        ],
        check=True,
        capture_output=True,
    )
    pwfile.unlink()
    process = subprocess.Popen(
        [
            *run_as,
            str(bindir / "postgres"),
            "-D",
            str(data),
            "-p",
            str(server.port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={workdir}",
            "-c",
            "fsync=off",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(workdir / "postgres.log", "wb"),  # noqa: SIM115
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while (
            subprocess.run(
                [str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(server.port)],
                capture_output=True,
            ).returncode
            != 0
        ):
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError((workdir / "postgres.log").read_text())
            time.sleep(0.2)
        if ensure:
            result = server.ensure()
            if result.returncode != 0:
                raise RuntimeError(
                    f"mlflow-db's ensure step failed:\n{result.stdout}{result.stderr}"
                )
        yield server
    finally:
        # A fast shutdown: a smart one (SIGTERM) would wait for clients a test left open.
        subprocess.run(
            [*run_as, str(bindir / "pg_ctl"), "stop", "-D", str(data), "-m", "fast", "-w"],
            capture_output=True,
            timeout=60,
        )
        stop(process)
        shutil.rmtree(workdir, ignore_errors=True)


#: The MLflow logins of every test server of this session (basic-auth is always on). The
#: session's own MLflow clients log in as the admin (tests/conftest.py); tests of least
#: privilege log in as the service users.
TEST_PASSWORDS: dict[str, str] = {
    name: secrets.token_urlsafe(18)
    for name in ("admin", "trainer", "prediction-api", "mlflow-exporter")
}


def auth_env(user: str = "admin") -> dict[str, str]:
    """The MLflow client variables that log in as one of the test users."""
    return {"MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": TEST_PASSWORDS[user]}


@dataclass
class MlflowServer:
    """A running ``mlflow server`` (basic-auth) started through the stack's launcher.

    Attributes:
        url: The tracking server (UI, REST API, artifact proxy).
        ops_url: The launcher's ops endpoints (``/readyz``, ``/metrics``), no login.
        process: The launcher process.
        log_path: Its combined output.
    """

    url: str
    process: subprocess.Popen
    log_path: Path
    ops_url: str = ""

    def log(self) -> str:
        """What the server printed so far."""
        return self.log_path.read_text(errors="replace")


def start_mlflow_server(
    workdir: Path,
    store_env: dict[str, str],
    port: int | None = None,
    ops_port: int | None = None,
) -> MlflowServer:
    """Starts the tracking server on 127.0.0.1 with artifacts under ``workdir``.

    Returns once the launcher is ready: the server answers and the users of
    :data:`TEST_PASSWORDS` exist with their grants.

    Args:
        workdir: Folder for artifacts, metrics files, the auth database (SQLite stores) and
            the log.
        store_env: Variables choosing the stores (``MLFLOW_BACKEND_STORE_URI``, or the
            PostgreSQL set), plus any other server setting (e.g. ``MLFLOW_WORKERS``).
        port: The port, or a free one.
        ops_port: The ops port, or a free one.
    """
    port = port or free_port()
    ops_port = ops_port or free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "POSTGRES_"))},
        "MLFLOW_ADMIN_PASSWORD": TEST_PASSWORDS["admin"],
        "MLFLOW_TRAINER_PASSWORD": TEST_PASSWORDS["trainer"],
        "MLFLOW_PREDICTION_API_PASSWORD": TEST_PASSWORDS["prediction-api"],
        "MLFLOW_EXPORTER_PASSWORD": TEST_PASSWORDS["mlflow-exporter"],
        "MLFLOW_FLASK_SECRET_KEY": secrets.token_urlsafe(24),
        **store_env,
        "MLFLOW_HOST": "127.0.0.1",
        "MLFLOW_PORT": str(port),
        "MLFLOW_OPS_PORT": str(ops_port),
        "MLFLOW_ARTIFACTS_DESTINATION": str(workdir / "artifacts"),
        "MLFLOW_PROMETHEUS_DIR": str(workdir / "prometheus"),
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    if "MLFLOW_BACKEND_STORE_URI" in store_env:
        env.setdefault("MLFLOW_AUTH_DATABASE_URI", f"sqlite:///{workdir / 'auth.db'}")
    log_path = workdir / "mlflow-server.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow_server"],
        env=env,
        cwd=workdir,
        stdout=open(log_path, "ab"),  # noqa: SIM115 (the child keeps it)
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = MlflowServer(
        f"http://127.0.0.1:{port}", process, log_path, f"http://127.0.0.1:{ops_port}"
    )
    try:
        wait_until_healthy(f"{server.ops_url}/readyz", timeout=120, process=process)
    except Exception:
        stop(process)
        raise RuntimeError(f"MLflow server did not start:\n{server.log()}") from None
    return server
