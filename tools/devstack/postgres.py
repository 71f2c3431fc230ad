"""PostgreSQL as a local process: a throw-away cluster set up as mlflow-db is."""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from devstack.services import REPO, StartupError, free_port
from wine_mlops.processes import stop_process_group
from wine_mlops.waiting import wait_until

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
        monitoring_database: The prediction log's database (``MONITORING_DB``).
        monitoring_user: The prediction API's role there (``MONITORING_DB_USER``).
        monitoring_password: Its password (``MONITORING_DB_PASSWORD``).
        reader_user: Retraining's read-only role there (``MONITORING_READER_USER``).
        reader_password: Its password (``MONITORING_READER_PASSWORD``).
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
    monitoring_database: str = "monitoring"
    monitoring_user: str = "monitoring_app"
    monitoring_password: str = field(default_factory=lambda: secrets.token_urlsafe(12) + "%@:/'")
    reader_user: str = "monitoring_reader"
    reader_password: str = field(default_factory=lambda: secrets.token_urlsafe(12) + "%@:/'")

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
            "MONITORING_DB": self.monitoring_database,
            "MONITORING_DB_USER": self.monitoring_user,
            "MONITORING_DB_PASSWORD": self.monitoring_password,
            "MONITORING_READER_USER": self.reader_user,
            "MONITORING_READER_PASSWORD": self.reader_password,
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

    def monitoring_url(self, *, reader: bool = False, with_password: bool = True) -> str:
        """A SQLAlchemy URI (psycopg2) of the prediction log, logging in over TCP as
        ``monitoring_app`` (or ``monitoring_reader``), as the services do.

        Args:
            reader: Log in as the read-only role (retraining's).
            with_password: False leaves the password out, for a password file instead
                (see :meth:`write_password_file`).
        """
        user, password = (
            (self.reader_user, self.reader_password)
            if reader
            else (self.monitoring_user, self.monitoring_password)
        )
        login = quote(user, safe="")
        if with_password:
            login += ":" + quote(password, safe="")
        return (
            f"postgresql+psycopg2://{login}@127.0.0.1:{self.port}/"
            f"{quote(self.monitoring_database, safe='')}"
        )

    def write_password_file(self, path: Path, *, reader: bool = False) -> Path:
        """Writes a monitoring role's password as compose's secret files hold it (with a
        trailing newline, mode 0600) and returns the path."""
        path.write_text((self.reader_password if reader else self.monitoring_password) + "\n")
        path.chmod(0o600)
        return path


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
    logs in as and its two databases, and the prediction log's database with its two roles
    (random passwords: :attr:`PostgresServer.monitoring_password`, ``reader_password``), as
    the database container does.

    When run as root the cluster runs as the ``postgres`` account (initdb refuses root); the
    folder is then made under /tmp so that account can reach it.

    Args:
        superuser: The superuser's name (earlier versions of the stack called it ``mlflow``).
        ensure: False skips the ensure step: the cluster then holds only the superuser and
            the maintenance database ``postgres`` (to build an older volume's state first).

    Raises:
        StartupError: With the server's log, when it does not accept connections in time.
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
    log = workdir / "postgres.log"
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
        stderr=open(log, "wb"),  # noqa: SIM115 (the child keeps it)
        start_new_session=True,
    )

    def accepts_connections() -> bool:
        if process.poll() is not None:
            raise StartupError(f"PostgreSQL exited with {process.returncode}:\n{log.read_text()}")
        ready = [str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(server.port)]
        return subprocess.run(ready, capture_output=True).returncode == 0

    try:
        try:
            wait_until(accepts_connections, f"PostgreSQL on port {server.port}", timeout=30)
        except TimeoutError as exc:
            raise StartupError(f"{exc}:\n{log.read_text()}") from None
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
        stop_process_group(process)
        shutil.rmtree(workdir, ignore_errors=True)
