"""``make backup`` and ``make restore``: the stack's data in one archive, and back.

    python tools/backup.py backup  [--env-file .env] [--dir backups]
    python tools/backup.py restore [--env-file .env] backups/<file>.tar

The archive is a tar file (``<project>-<UTC time>.tar``) of already-compressed members:

=============================== ================================================================
``manifest.json``               format and version, creation time, git commit, PostgreSQL and
                                MLflow versions, alembic revisions, counts, sha256 and size of
                                every other member
``databases/tracking.dump``     ``pg_dump --format=custom`` of the tracking store (``POSTGRES_DB``)
``databases/auth.dump``         the same of basic-auth's users and permissions (``MLFLOW_AUTH_DB``)
``databases/monitoring.dump``   the same of the prediction log (``MONITORING_DB``: predictions and
                                their feedback), when the stack has one
``volumes/mlflow-artifacts.tgz`` the artifact store (volume ``mlflow-artifacts``)
``volumes/grafana-data.tgz``    Grafana's state, when the volume ``grafana-data`` exists
=============================== ================================================================

**backup** runs against the running stack: each database is dumped by ``pg_dump`` inside the
``mlflow-db`` container (the superuser, over the local socket) from a snapshot that the manifest's
counts are read from too; the volumes are read by a throwaway container. The archive is written
to a temporary name and renamed when complete. A stack whose volume predates the prediction log
(no database ``MONITORING_DB``) is backed up without ``databases/monitoring.dump``; the manifest
says why.

**restore** first checks the whole archive (manifest, format, every checksum) and refuses a bad
one before touching anything; it refuses a stack that already has data. It starts ``mlflow-db``
only (``mlflow-server`` would create an empty schema and users at its start), restores into
staging databases and staging folders, checks their counts against the manifest, and swaps them
in at the end; on failure the staging parts are dropped and the stack is left empty. The MLflow
admin's password becomes the current ``MLFLOW_ADMIN_PASSWORD`` (the launcher re-applies the
service users' passwords itself at its next start). The prediction log's tables are restored as
the superuser's, without privileges; the ensure step of ``mlflow-db`` (run again at the end)
grants its roles theirs, and the restore checks that the tables are the superuser's with exactly
the privileges of ``mlflow-db/monitoring.sql``. An archive without the prediction log (older, or
of a stack that had none) leaves it empty, as the ensure step made it.

Exit codes: 0 done, 1 failed (nothing half-restored), 2 refused (bad archive, stack not in the
required state, bad arguments).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any

FORMAT = "wine-mlops-backup"
#: 2 added the prediction log (``databases/monitoring.dump``): an older tool, which would restore
#: such an archive without it, refuses it instead.
FORMAT_VERSION = 2
#: Versions this tool restores (a version 1 archive has no prediction log).
READABLE_VERSIONS = (1, 2)
MANIFEST = "manifest.json"
DUMPS = {
    "tracking": "databases/tracking.dump",
    "auth": "databases/auth.dump",
    "monitoring": "databases/monitoring.dump",
}
#: Volumes in the archive, by their compose name; the first one is required.
VOLUMES = {
    "mlflow-artifacts": "volumes/mlflow-artifacts.tgz",
    "grafana-data": "volumes/grafana-data.tgz",
}
#: Members every archive has; ``databases/monitoring.dump`` is in those whose manifest lists
#: the prediction log's database without a reason for its absence.
REQUIRED = (DUMPS["tracking"], DUMPS["auth"], VOLUMES["mlflow-artifacts"])

#: What the manifest counts, per database; read in the dump's own snapshot.
COUNTS_SQL = {
    "tracking": """SELECT json_build_object(
        'experiments', (SELECT count(*) FROM experiments),
        'runs', (SELECT count(*) FROM runs),
        'metrics', (SELECT count(*) FROM metrics),
        'registered_models', (SELECT count(*) FROM registered_models),
        'model_versions', (SELECT count(*) FROM model_versions),
        'aliases', (SELECT count(*) FROM registered_model_aliases),
        'alembic_revision', (SELECT max(version_num) FROM alembic_version));""",
    "auth": """SELECT json_build_object(
        'users', (SELECT count(*) FROM users),
        'alembic_revision', (SELECT max(version_num) FROM alembic_version_auth));""",
    "monitoring": """SELECT json_build_object(
        'predictions', (SELECT count(*) FROM public.predictions),
        'feedback', (SELECT count(*) FROM public.feedback));""",
}
#: The prediction log's tables (mlflow-db/monitoring.sql).
MONITORING_TABLES = ("feedback", "predictions")
_COPY_CHUNK = 1 << 20


class RefusedError(Exception):
    """The command will not run (bad archive, wrong stack state); nothing was changed."""


class FailedError(Exception):
    """A step failed; the message says what was undone."""


def say(line: str) -> None:
    """One progress line."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _copy_hashing(source: IO[bytes], target: IO[bytes]) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    while chunk := source.read(_COPY_CHUNK):
        digest.update(chunk)
        target.write(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def file_digest(path: Path) -> tuple[str, int]:
    """The sha256 (hex) and size of a file."""
    with path.open("rb") as source:
        digest = hashlib.file_digest(source, "sha256")
    return digest.hexdigest(), path.stat().st_size


# --- The archive (no Docker) ---------------------------------------------------------------


def write_archive(target: Path, members: dict[str, Path], manifest: dict[str, Any]) -> None:
    """Writes the archive: the manifest (with every member's checksum) first, then the members.

    It is written as ``.<name>.partial`` and renamed when complete, so an interrupted or failed
    backup never leaves something that looks like an archive.
    """
    manifest = {
        **manifest,
        "members": {
            name: dict(zip(("sha256", "size"), file_digest(path), strict=True))
            for name, path in members.items()
        },
    }
    partial = target.with_name(f".{target.name}.partial")
    try:
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
            data = json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
            tar.addfile(info, io.BytesIO(data))
            for name, path in members.items():
                tar.add(path, arcname=name, recursive=False)
        partial.chmod(0o600)  # password hashes and all the data: for its owner only
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def verify_archive(archive: Path, into: Path) -> dict[str, Any]:
    """Checks the whole archive and extracts its members into ``into``; returns the manifest.

    Raises:
        RefusedError: With a one-line reason, when the file is not a backup of this stack, its
            format version is unknown, a member is missing, extra or differs from its checksum,
            or the archive is truncated.
    """
    if not archive.is_file():
        raise RefusedError(f"{archive}: no such file")
    try:
        tar = tarfile.open(archive, "r:")  # noqa: SIM115 (closed below)
    except tarfile.TarError:
        raise RefusedError(f"{archive}: not a tar file, so not a backup archive") from None
    try:
        with tar:
            members = tar.getmembers()  # reads every header: a truncated archive fails here
            names = [m.name for m in members]
            if MANIFEST not in names:
                raise RefusedError(f"{archive}: no {MANIFEST}: not a backup archive of this stack")
            manifest = _read_manifest(archive, tar.extractfile(MANIFEST))
            expected: dict[str, dict[str, Any]] = manifest["members"]
            listed = set(expected) | {MANIFEST}
            if twice := sorted({n for n in names if names.count(n) > 1}):
                raise RefusedError(f"{archive}: member {twice[0]} appears twice")
            if extra := sorted(set(names) - listed):
                raise RefusedError(f"{archive}: member {extra[0]} is not in the manifest")
            required = required_members(manifest)
            if missing := sorted(set(expected) - set(names)) or sorted(required - listed):
                raise RefusedError(f"{archive}: member {missing[0]} is missing")
            for member in members:
                if member.name != MANIFEST:
                    _extract_checked(archive, tar, member, expected[member.name], into)
    except (tarfile.TarError, EOFError, UnicodeDecodeError) as exc:
        raise RefusedError(f"{archive}: truncated or damaged archive ({exc})") from None
    return manifest


def _read_manifest(archive: Path, stream: IO[bytes] | None) -> dict[str, Any]:
    try:
        manifest = json.loads(stream.read()) if stream else None
    except json.JSONDecodeError:
        manifest = None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise RefusedError(f"{archive}: {MANIFEST} is not a {FORMAT} manifest")
    if manifest.get("format_version") not in READABLE_VERSIONS:
        readable = " and ".join(str(version) for version in READABLE_VERSIONS)
        raise RefusedError(
            f"{archive}: format version {manifest.get('format_version')!r} is not known "
            f"(this version reads {readable})"
        )
    if not isinstance(manifest.get("members"), dict):
        raise RefusedError(f"{archive}: {MANIFEST} lists no members")
    return manifest


def required_members(manifest: dict[str, Any]) -> set[str]:
    """The members an archive with this manifest must have: MLflow's databases and artifacts
    always, the prediction log's dump unless the manifest says why it is absent."""
    required = set(REQUIRED)
    databases = manifest.get("databases")
    monitoring = databases.get("monitoring") if isinstance(databases, dict) else None
    if isinstance(monitoring, dict) and not monitoring.get("absent"):
        required.add(DUMPS["monitoring"])
    return required


def monitoring_absence(manifest: dict[str, Any]) -> str:
    """Why an archive holds no prediction log ("" when it holds one)."""
    if DUMPS["monitoring"] in manifest["members"]:
        return ""
    monitoring = manifest.get("databases", {}).get("monitoring") or {}
    return str(
        monitoring.get("absent")
        or "the archive was made before backups included the prediction log"
    )


def _extract_checked(
    archive: Path, tar: tarfile.TarFile, member: tarfile.TarInfo, want: dict[str, Any], into: Path
) -> None:
    path = PurePosixPath(member.name)
    if not member.isfile() or path.is_absolute() or ".." in path.parts:
        raise RefusedError(f"{archive}: member {member.name} is not a plain file")
    target = into / path
    target.parent.mkdir(parents=True, exist_ok=True)
    source = tar.extractfile(member)
    if source is None:  # not reached: a regular file has content
        raise RefusedError(f"{archive}: member {member.name} has no content")
    with source, target.open("wb") as out:
        digest, size = _copy_hashing(source, out)
    if (digest, size) != (want.get("sha256"), want.get("size")):
        raise RefusedError(
            f"{archive}: member {member.name} fails its checksum (the archive is damaged or "
            "was changed)"
        )


def count_files(tgz: Path) -> int:
    """Regular files in a gzipped tar of a volume."""
    with tarfile.open(tgz, "r:gz") as tar:
        return sum(1 for member in tar if member.isfile())


# --- The stack (docker compose) ------------------------------------------------------------


class Stack:
    """The compose project of ``--env-file`` (same environment as the Makefile's COMPOSE)."""

    def __init__(self, env_file: Path) -> None:
        self.compose = ["docker", "compose", "--env-file", str(env_file)]
        self.config: dict[str, Any] = json.loads(self.run("config", "--format", "json").stdout)
        db_env = self.config["services"]["mlflow-db"]["environment"]
        self.superuser: str = db_env.get("POSTGRES_USER") or "postgres"
        self.role: str = db_env["MLFLOW_DB_USER"]
        self.databases = {
            "tracking": db_env["POSTGRES_DB"],
            "auth": db_env["MLFLOW_AUTH_DB"],
            "monitoring": db_env.get("MONITORING_DB") or "monitoring",
        }
        #: The prediction log's roles: the API's and retraining's (mlflow-db/ensure-roles.sh).
        self.monitoring_roles: tuple[str, str] = (
            db_env.get("MONITORING_DB_USER") or "monitoring_app",
            db_env.get("MONITORING_READER_USER") or "monitoring_reader",
        )
        self.image: str = self.config["services"]["mlflow-server"]["image"]

    @property
    def project(self) -> str:
        return str(self.config["name"])

    def run(
        self, *args: str, stdin: IO[bytes] | None = None, stdout: IO[bytes] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``docker compose ARGS``; raises with compose's own message when it fails."""
        return _run([*self.compose, *args], stdin=stdin, stdout=stdout)

    def running(self) -> set[str]:
        return set(self.run("ps", "--status", "running", "--services").stdout.split())

    def psql(self, database: str, sql: str, **variables: str) -> str:
        """Runs SQL as the superuser in ``mlflow-db`` over its local socket; its output.

        Values go in as psql variables (``:'name'`` a literal, ``:"name"`` an identifier).
        """
        settings = [f"--variable={name}={value}" for name, value in variables.items()]
        command = [*self.compose, "exec", "-T", "mlflow-db", *self._psql_args(database)]
        return _run([*command, *settings], text_in=sql).stdout.strip()

    def database_exists(self, name: str) -> bool:
        exists = "SELECT count(*) FROM pg_database WHERE datname = :'db';"
        return self.psql("postgres", exists, db=name) != "0"

    def _psql_args(self, database: str) -> list[str]:
        return ["psql", "-XqAt", "--set=ON_ERROR_STOP=1", "-U", self.superuser, "-d", database]

    @contextlib.contextmanager
    def snapshot(self, database: str) -> Iterator[tuple[str, Callable[[str], str]]]:
        """A read-only REPEATABLE READ transaction: its exported snapshot id (for ``pg_dump
        --snapshot``), and a function that runs a query in that same snapshot (one-line
        answers)."""
        session = subprocess.Popen(
            [*self.compose, "exec", "-T", "mlflow-db", *self._psql_args(database)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        stdin, stdout = session.stdin, session.stdout
        if stdin is None or stdout is None:  # not reached: both are pipes
            raise FailedError("no pipe to psql")

        def query(sql: str) -> str:
            stdin.write(" ".join(sql.split()) + "\n")
            stdin.flush()
            if not (answer := stdout.readline().strip()):
                raise FailedError(f"database {database}: no answer to {sql.split()[0]} (see above)")
            return answer

        begin = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT pg_export_snapshot();"
        try:
            yield query(begin), query  # psql -q prints nothing for BEGIN: one line, the id
        finally:
            with contextlib.suppress(OSError):
                stdin.write("COMMIT;\n")
                stdin.close()
            session.wait(timeout=60)

    def volume(self, key: str) -> str:
        """The Docker name of a compose volume (``<project>_<key>``)."""
        return str(self.config["volumes"][key]["name"])

    def volume_exists(self, key: str) -> bool:
        return _run(["docker", "volume", "inspect", self.volume(key)], check=False).returncode == 0

    def in_volume(
        self,
        key: str,
        script: str,
        read_only: bool = False,
        stdin: IO[bytes] | None = None,
        stdout: IO[bytes] | None = None,
    ) -> str:
        """Runs a shell script in a throwaway container with the volume at ``/volume``.

        The container is the mlflow-server image as root (to read and keep every file's owner),
        without network and with only the capabilities tar needs.
        """
        mount = f"{self.volume(key)}:/volume{':ro' if read_only else ''}"
        caps = [f"--cap-add={cap}" for cap in ("CHOWN", "DAC_OVERRIDE", "FOWNER")]
        command = ["docker", "run", "--rm", "-i", "--network=none", "--user=0:0", "--cap-drop=ALL"]
        command += [*caps, "--security-opt=no-new-privileges", "--entrypoint=sh", "-v", mount]
        command += [self.image, "-euc", script]
        return _run(command, stdin=stdin, stdout=stdout).stdout

    def create_volume(self, key: str) -> None:
        """Creates the volume as compose would (its labels: compose then takes it as its own)."""
        if not self.volume_exists(key):
            labels = [
                f"com.docker.compose.project={self.project}",
                f"com.docker.compose.volume={key}",
            ]
            _run(
                ["docker", "volume", "create", *(f"--label={x}" for x in labels), self.volume(key)]
            )


def _run(
    command: list[str],
    *,
    check: bool = True,
    stdin: IO[bytes] | None = None,
    stdout: IO[bytes] | None = None,
    text_in: str | None = None,
) -> subprocess.CompletedProcess[str]:
    if stdin is not None or stdout is not None:  # binary streams
        result = subprocess.run(
            command, stdin=stdin, stdout=stdout or subprocess.PIPE, stderr=subprocess.PIPE
        )
        completed = subprocess.CompletedProcess(
            command,
            result.returncode,
            (result.stdout or b"").decode(errors="replace"),
            result.stderr.decode(errors="replace"),
        )
    else:
        completed = subprocess.run(command, input=text_in, capture_output=True, text=True)
    if check and completed.returncode != 0:
        what = " ".join(command[:6])
        raise FailedError(f"{what} … exited {completed.returncode}: {completed.stderr.strip()}")
    return completed


# --- backup --------------------------------------------------------------------------------


def backup(stack: Stack, directory: Path) -> Path:
    """Writes one archive of the running stack into ``directory``; returns its path."""
    started = time.monotonic()
    if missing := {"mlflow-db", "mlflow-server"} - stack.running():
        raise RefusedError(f"{', '.join(sorted(missing))} not running: start the stack (make up)")
    directory.mkdir(parents=True, exist_ok=True)
    created = datetime.now(UTC)
    target = directory / f"{stack.project}-{created:%Y%m%dT%H%M%SZ}.tar"
    if target.exists():
        raise RefusedError(f"{target} exists already")
    say(f"backup of compose project {stack.project} to {target}")
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created_at": created.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "git_commit": os.environ.get("GIT_COMMIT") or _git_commit(),
        "compose_project": stack.project,
        "mlflow_version": stack.run(
            "exec", "-T", "mlflow-server", "python3", "-c",
            "import importlib.metadata as m; print(m.version('mlflow'))",
        ).stdout.strip(),
        "databases": {},
        "volumes": {},
        "counts": {},
    }  # fmt: skip
    with tempfile.TemporaryDirectory(dir=directory, prefix=".backup-") as work:
        members: dict[str, Path] = {}
        # The databases first, the artifacts after. Nothing in the stack deletes an artifact,
        # so every file that existed when the dumps were taken is still there when the volume
        # is copied: every artifact of a dumped run, and every model a dumped version points to
        # (MLflow writes a model's files before it registers the version), is in the archive.
        # The other order would miss files written between the copy and the dumps, such as the
        # model of a version registered in between.
        for key, member in DUMPS.items():
            database = stack.databases[key]
            if key == "monitoring" and (absent := _why_no_prediction_log(stack, database)):
                manifest["databases"][key] = {"name": database, "absent": absent}
                say(f"  database {database}: not in the archive: {absent}")
                continue
            path = Path(work) / member
            path.parent.mkdir(parents=True, exist_ok=True)
            step = time.monotonic()
            # pg_dump reads one snapshot; the counts are read in that same snapshot.
            with stack.snapshot(database) as (snapshot, query), path.open("wb") as out:
                stack.run(
                    "exec", "-T", "mlflow-db", "pg_dump", "--format=custom",
                    f"--snapshot={snapshot}", "-U", stack.superuser, "-d", database, stdout=out,
                )  # fmt: skip
                counts = json.loads(query(COUNTS_SQL[key]))
                manifest["postgresql_version"] = query("SHOW server_version;")
            manifest["databases"][key] = {"name": database}
            schema = ""
            if revision := counts.pop("alembic_revision", None):
                manifest["databases"][key]["alembic_revision"] = revision
                schema = f"; schema {revision}"
            manifest["counts"].update(counts)
            members[member] = path
            say(
                f"  database {database}: dumped {_size(path.stat().st_size)} in "
                f"{time.monotonic() - step:.1f} s ({_describe(counts)}{schema})"
            )
        for key, member in VOLUMES.items():
            if key != "mlflow-artifacts" and not stack.volume_exists(key):
                say(f"  volume {key}: not present, skipped")
                continue
            step = time.monotonic()
            path = Path(work) / member
            path.parent.mkdir(parents=True, exist_ok=True)
            _read_volume(stack, key, path)
            files = count_files(path)
            manifest["volumes"][key] = {"member": member, "files": files}
            if key == "mlflow-artifacts":
                manifest["counts"]["artifact_files"] = files
            members[member] = path
            say(
                f"  volume {key}: {files} files, {_size(path.stat().st_size)} compressed, in "
                f"{time.monotonic() - step:.1f} s"
            )
        write_archive(target, members, manifest)
    say(
        f"wrote {target} ({_size(target.stat().st_size)}) in {time.monotonic() - started:.1f} s; "
        f"restore with: make restore BACKUP={target}"
    )
    return target


def _why_no_prediction_log(stack: Stack, database: str) -> str:
    """Why the stack has no prediction log to back up ("" when it has one)."""
    if not stack.database_exists(database):
        return (
            f"mlflow-db has no database {database} (its volume predates the prediction log; "
            "the next start of mlflow-db creates it)"
        )
    tables = stack.psql(
        database,
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' "
        "AND tablename IN ('predictions', 'feedback');",
    )
    if tables != str(len(MONITORING_TABLES)):
        return f"database {database} has no prediction log tables (see mlflow-db's log)"
    return ""


def _read_volume(stack: Stack, key: str, path: Path) -> None:
    # GNU tar exits 1 when a file changed while it was read: a newer file than the dumps (a
    # training writing now), which no dumped row references. Anything worse exits 2.
    script = 'tar -C /volume --numeric-owner -czf - . || [ "$?" -eq 1 ]'
    # Grafana's SQLite file is copied as it is on disk; its dashboards are provisioned anyway.
    with path.open("wb") as out:
        stack.in_volume(key, script, read_only=True, stdout=out)


def _describe(counts: dict[str, Any]) -> str:
    return ", ".join(f"{value} {name.replace('_', ' ')}" for name, value in counts.items())


def _git_commit() -> str:
    result = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else ""


# --- restore -------------------------------------------------------------------------------

#: Extracts a volume's archive (stdin) into a staging folder on the volume; prints its files.
_STAGE_VOLUME = """rm -rf /volume/.restore-staging && mkdir /volume/.restore-staging
tar -xzf - -C /volume/.restore-staging --numeric-owner --same-owner
find /volume/.restore-staging -type f | wc -l"""
#: Moves the staging folder's content into place (renames on the same file system).
_COMMIT_VOLUME = """cd /volume
chown --reference=.restore-staging . && chmod --reference=.restore-staging .
find .restore-staging -mindepth 1 -maxdepth 1 -exec mv -t . {} +
rmdir .restore-staging"""
#: Empties a volume: only used on volumes that were empty before the restore.
_EMPTY_VOLUME = "find /volume -mindepth 1 -delete"


def restore(stack: Stack, archive: Path, members: Path, manifest: dict[str, Any]) -> None:
    """Restores a verified archive (extracted in ``members``) onto an empty stack."""
    started = time.monotonic()
    volumes = [key for key in VOLUMES if key in manifest.get("volumes", {})]
    _refuse_unless_empty(stack, volumes)
    restored = [key for key in DUMPS if DUMPS[key] in manifest["members"]]
    staging = {key: f"{stack.databases[key][:50]}_restore" for key in restored}
    try:
        for key in restored:
            step = time.monotonic()
            _stage_database(stack, key, staging[key], members / DUMPS[key], manifest)
            took = time.monotonic() - step
            say(f"  database {stack.databases[key]}: restored into {staging[key]} in {took:.1f} s")
        if absent := monitoring_absence(manifest):
            say(
                f"  database {stack.databases['monitoring']}: not in the archive ({absent}): "
                "the prediction log stays empty, as mlflow-db's ensure step made it"
            )
        _set_admin_password(stack, staging["auth"])
        for key in volumes:
            step = time.monotonic()
            stack.create_volume(key)
            with (members / VOLUMES[key]).open("rb") as tgz:
                files = int(stack.in_volume(key, _STAGE_VOLUME, stdin=tgz).strip())
            if files != (expected := manifest["volumes"][key]["files"]):
                raise FailedError(
                    f"volume {key}: {files} files extracted, the manifest says {expected}"
                )
            say(f"  volume {key}: {files} files in staging in {time.monotonic() - step:.1f} s")
        for key in volumes:
            stack.in_volume(key, _COMMIT_VOLUME)
        _swap_databases(stack, staging)  # the commit point: one transaction
    except BaseException as exc:
        _roll_back(stack, staging, volumes)
        if isinstance(exc, FailedError | subprocess.SubprocessError):
            raise FailedError(
                f"{exc}; the staging databases and folders were dropped, the stack is as empty "
                "as before"
            ) from exc
        raise
    # After the commit point: the empty databases that mlflow-db made at its start go, and the
    # ensure step (idempotent) revokes PUBLIC's rights on the renamed ones, checks every owner,
    # and grants the prediction log's roles their privileges on the restored tables.
    for key in restored:
        stack.psql("postgres", 'DROP DATABASE IF EXISTS :"db";', db=_replaced(stack, key))
    stack.run("exec", "-T", "mlflow-db", "bash", "/mlflow-db/ensure-roles.sh")
    _check_prediction_log_privileges(stack)
    counts = manifest["counts"]
    say(
        f"restored {archive} ({_describe(counts)}) in {time.monotonic() - started:.1f} s.\n"
        "Next: make deploy serve (serves the restored champion; make up would also train)"
    )


def _replaced(stack: Stack, key: str) -> str:
    """The name a database that the restore replaces has until it is dropped."""
    return stack.databases[key] + "_replaced"


def _refuse_unless_empty(stack: Stack, volumes: list[str]) -> None:
    if _run(["docker", "image", "inspect", stack.image], check=False).returncode != 0:
        raise RefusedError(f"no image {stack.image} here: build the images first (make build)")
    advice = "run make destroy-data first (it deletes the stack's data)"
    if running := stack.running() - {"mlflow-db"}:
        raise RefusedError(f"the stack is running ({', '.join(sorted(running))}): {advice}")
    for key in volumes:
        if stack.volume_exists(key) and stack.in_volume(key, "ls -A /volume", read_only=True):
            raise RefusedError(f"volume {stack.volume(key)} holds data: {advice}")
    say("  starting mlflow-db only (mlflow-server would create an empty schema at its start)")
    stack.run("up", "--detach", "--wait", "--no-build", "mlflow-db")
    tables = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public';"
    for key, name in stack.databases.items():
        if key != "monitoring" and stack.psql(name, tables) != "0":
            raise RefusedError(f"database {name} holds data: {advice}")
    # The ensure step made the prediction log's tables at the start of mlflow-db: empty ones.
    monitoring = stack.databases["monitoring"]
    if not _why_no_prediction_log(stack, monitoring):
        rows = stack.psql(
            monitoring, "SELECT (SELECT count(*) FROM public.predictions) "
            "+ (SELECT count(*) FROM public.feedback);",
        )  # fmt: skip
        if rows != "0":
            raise RefusedError(f"database {monitoring} holds logged predictions: {advice}")
    say("  the stack is empty: restoring")


def _stage_database(
    stack: Stack, key: str, staging: str, dump: Path, manifest: dict[str, Any]
) -> None:
    # MLflow's databases and every object in them belong to MLflow's role; the prediction log
    # and its tables to the superuser (mlflow-db/monitoring.sql), its roles own nothing.
    owner = [f"--role={stack.role}"] if key != "monitoring" else []
    stack.psql(
        "postgres",
        'DROP DATABASE IF EXISTS :"db"; CREATE DATABASE :"db" OWNER :"role";\n'
        'REVOKE ALL ON DATABASE :"db" FROM PUBLIC;',
        db=staging,
        role=stack.role if key != "monitoring" else stack.superuser,
    )
    with dump.open("rb") as source:
        # Every object is created by (and so belongs to) the role that runs pg_restore; no
        # privilege is restored (the ensure step grants them).
        stack.run(
            "exec", "-T", "mlflow-db", "pg_restore", "-U", stack.superuser, "-d", staging,
            "--no-owner", "--no-privileges", *owner, "--exit-on-error",
            "--single-transaction", stdin=source,
        )  # fmt: skip
    counts = json.loads(stack.psql(staging, COUNTS_SQL[key]))
    if "alembic_revision" in counts and counts.pop("alembic_revision") != manifest["databases"][
        key
    ].get("alembic_revision"):
        raise FailedError(f"database {staging}: alembic revision differs from the manifest's")
    for name, value in counts.items():
        if (expected := manifest["counts"].get(name)) != value:
            raise FailedError(f"database {staging}: {value} {name}, the manifest says {expected}")


def _set_admin_password(stack: Stack, auth_db: str) -> None:
    """The restored admin gets the current MLFLOW_ADMIN_PASSWORD (the launcher refuses a
    mismatch; it re-applies the service users' passwords itself)."""
    from werkzeug.security import check_password_hash, generate_password_hash

    admin = stack.config["services"]["mlflow-server"]["environment"]["MLFLOW_ADMIN_USERNAME"]
    password = Path(stack.config["secrets"]["mlflow-admin-password"]["file"]).read_text().strip()
    stored = stack.psql(
        auth_db, "SELECT password_hash FROM users WHERE username = :'admin';", admin=admin
    )
    if stored and not check_password_hash(stored, password):
        stack.psql(
            auth_db,
            "UPDATE users SET password_hash = :'hash' WHERE username = :'admin';",
            admin=admin,
            hash=generate_password_hash(password),
        )
        say(f"  MLflow user {admin}: password set to this .env's MLFLOW_ADMIN_PASSWORD")


def _swap_databases(stack: Stack, staging: dict[str, str]) -> None:
    """Renames each staging database to its live name in one transaction; a live one (made
    empty by mlflow-db at its start) is renamed to ``<name>_replaced`` first."""
    names: dict[str, str] = {}
    statements = ["BEGIN;"]
    for i, (key, staged) in enumerate(staging.items()):
        names |= {f"live{i}": stack.databases[key], f"staged{i}": staged}
        names[f"old{i}"] = _replaced(stack, key)
        if stack.database_exists(stack.databases[key]):
            statements.append(f'ALTER DATABASE :"live{i}" RENAME TO :"old{i}";')
        statements.append(f'ALTER DATABASE :"staged{i}" RENAME TO :"live{i}";')
    statements.append("COMMIT;")
    try:
        stack.psql("postgres", "\n".join(statements), **names)
    except FailedError:
        # Committed all the same (the answer was lost) when the staging database is gone.
        if stack.database_exists(names["staged0"]):
            raise
    swapped = ", ".join(stack.databases[key] for key in staging)
    say(f"  databases {swapped} swapped in (one transaction)")


def _check_prediction_log_privileges(stack: Stack) -> None:
    """Raises unless the prediction log's tables belong to the superuser, with exactly the
    privileges that mlflow-db/monitoring.sql grants (after the ensure step)."""
    database = stack.databases["monitoring"]
    app, reader = stack.monitoring_roles
    expected = {
        ("feedback", app, "INSERT"), ("feedback", app, "SELECT"), ("feedback", reader, "SELECT"),
        ("predictions", app, "DELETE"), ("predictions", app, "INSERT"),
        ("predictions", app, "SELECT"), ("predictions", reader, "SELECT"),
    }  # fmt: skip
    found = json.loads(stack.psql(database, _PREDICTION_LOG_PRIVILEGES))
    owners = {table: owner for table, owner in found["owners"]}
    granted = {(table, grantee, privilege) for table, grantee, privilege in found["grants"]}
    problems = [
        f"table {table} belongs to {owners.get(table) or 'nobody (missing)'}"
        for table in MONITORING_TABLES
        if owners.get(table) != stack.superuser
    ]
    problems += [f"{r} may {p} on {t} (not granted)" for t, r, p in sorted(expected - granted)]
    problems += [f"{r} may {p} on {t} (granted)" for t, r, p in sorted(granted - expected)]
    if problems:
        raise FailedError(
            f"the data is restored, but in database {database} {'; '.join(problems)}, not "
            "as mlflow-db/monitoring.sql says: read mlflow-db's log, run "
            "docker compose exec mlflow-db bash /mlflow-db/ensure-roles.sh and restore again "
            "if it does not help"
        )
    say(
        f"  database {database}: tables owned by {stack.superuser}, privileges of {app} and "
        f"{reader} exactly those of mlflow-db/monitoring.sql"
    )


#: The owners of the prediction log's tables, and every privilege on them of anyone but
#: their owner (grantee PUBLIC included), as JSON.
_PREDICTION_LOG_PRIVILEGES = """SELECT json_build_object(
    'owners', (SELECT coalesce(json_agg(json_build_array(relname, pg_get_userbyid(relowner))),
        '[]') FROM pg_class
        WHERE relnamespace = 'public'::regnamespace AND relname IN ('predictions', 'feedback')
        AND relkind = 'r'),
    'grants', (SELECT coalesce(json_agg(json_build_array(c.relname,
        CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END,
        a.privilege_type)), '[]')
        FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a
        WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'
        AND a.grantee <> c.relowner));"""


def _roll_back(stack: Stack, staging: dict[str, str], volumes: list[str]) -> None:
    for name in staging.values():
        with contextlib.suppress(FailedError):
            stack.psql("postgres", 'DROP DATABASE IF EXISTS :"db";', db=name)
    for key in volumes:  # empty before the restore (checked): emptied again
        if stack.volume_exists(key):
            with contextlib.suppress(FailedError):
                stack.in_volume(key, _EMPTY_VOLUME)


# --- command line --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--env-file", type=Path, default=Path(".env"))
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("backup", help="archive the running stack").add_argument(
        "--dir", type=Path, default=Path("backups")
    )
    commands.add_parser("restore", help="restore an archive onto an empty stack").add_argument(
        "archive", type=Path
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "backup":
            backup(Stack(args.env_file), args.dir)
            return 0
        say(f"restore from {args.archive}")
        with tempfile.TemporaryDirectory(prefix="wine-mlops-restore-") as members:
            manifest = verify_archive(args.archive, Path(members))
            say(
                f"  archive verified: {len(manifest['members'])} members, every checksum matches "
                f"(taken {manifest.get('created_at')}, MLflow {manifest.get('mlflow_version')})"
            )
            restore(Stack(args.env_file), args.archive, Path(members), manifest)
        return 0
    except RefusedError as exc:
        sys.stderr.write(f"{args.command} refused: {exc}\n")
        return 2
    except FailedError as exc:
        sys.stderr.write(f"{args.command} failed: {exc}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
