"""`make restore` checks the whole archive first: a bad one is refused before Docker is asked.

Each case runs the real command (``tools/backup.py restore``) with a ``docker`` on its PATH
that only writes down that it was called: a refused archive must leave it uncalled, and the
good archive shows that the command does reach Docker once the archive is accepted.

The prediction log (database ``monitoring``) goes through a real backup and restore: the same
command, with a ``docker`` that runs psql, pg_dump, pg_restore and mlflow-db's ensure step on
real PostgreSQL clusters (see the section at the end).
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from devstack import PostgresServer, postgres_server
from tests.support.processes import REPO
from wine_mlops.features import FEATURE_NAMES
from wine_mlops.monitoring_db import connect, feedback, predictions

_SPEC = importlib.util.spec_from_file_location("backup", REPO / "tools" / "backup.py")
assert _SPEC is not None
assert _SPEC.loader is not None
backup = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(backup)

TOOL = REPO / "tools" / "backup.py"


def _volume_tgz(path: Path) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in {
            "./1/run/artifacts/model.skops": b"model",
            "./1/report.txt": b"ok",
        }.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _members(folder: Path) -> dict[str, Path]:
    folder.mkdir()
    members = {}
    for name, member in backup.DUMPS.items():
        members[member] = folder / f"{name}.dump"
        members[member].write_bytes(f"PGDMP {name} ".encode() * 5000)
    members[backup.VOLUMES["mlflow-artifacts"]] = folder / "artifacts.tgz"
    _volume_tgz(folder / "artifacts.tgz")
    return members


def _manifest(**changes: Any) -> dict[str, Any]:
    return {
        "format": backup.FORMAT,
        "format_version": backup.FORMAT_VERSION,
        "created_at": "2026-01-01T00:00:00Z",
        "databases": {"monitoring": {"name": "monitoring"}},
        "counts": {"runs": 6, "predictions": 40, "feedback": 3, "artifact_files": 2},
        **changes,
    }


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    """A well-formed archive, written by the backup's own writer."""
    target = tmp_path / "wine-mlops-20260101T000000Z.tar"
    backup.write_archive(target, _members(tmp_path / "members"), _manifest())
    return target


def _tamper(archive: Path, member_name: str = backup.DUMPS["tracking"]) -> None:
    """Flips one byte in the middle of a member (the tracking dump); sizes stay the same."""
    with tarfile.open(archive) as tar:
        member = tar.getmember(member_name)
    with archive.open("r+b") as file:
        file.seek(member.offset_data + member.size // 2)
        byte = file.read(1)
        file.seek(-1, os.SEEK_CUR)
        file.write(bytes([byte[0] ^ 0xFF]))


def _tamper_prediction_log(archive: Path) -> None:
    _tamper(archive, backup.DUMPS["monitoring"])


def _without_prediction_log(archive: Path) -> None:
    """The prediction log's dump left out of the archive and of the member list, while the
    manifest still says the stack had one."""
    members = _members(archive.parent / "other")
    del members[backup.DUMPS["monitoring"]]
    archive.unlink()
    backup.write_archive(archive, members, _manifest())


def _without_manifest(archive: Path) -> None:
    archive.unlink()
    with tarfile.open(archive, "w") as tar:
        tar.add(TOOL, arcname="databases/tracking.dump")


def _random(archive: Path) -> None:
    archive.write_bytes(os.urandom(50_000))


def _truncated(archive: Path) -> None:
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])


def _unknown_version(archive: Path) -> None:
    members = _members(archive.parent / "other")
    archive.unlink()
    backup.write_archive(archive, members, _manifest(format_version=99))


def _member_added(archive: Path) -> None:
    with tarfile.open(archive, "a") as tar:
        tar.add(TOOL, arcname="databases/extra.dump")


def _run_restore(archive: Path, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    """``tools/backup.py restore ARCHIVE`` with a tripwire ``docker``; returns its log path."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    called = tmp_path / "docker-was-called"
    docker = bin_dir / "docker"
    docker.write_text(f'#!/bin/sh\necho "$*" >> {called}\nexit 1\n')
    docker.chmod(0o755)
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "TMPDIR": str(temp)}
    result = subprocess.run(
        [sys.executable, str(TOOL), "--env-file", str(tmp_path / "none.env"), "restore", archive],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert list(temp.iterdir()) == []  # the extracted members are gone too
    return result, called


def test_the_backup_writer_lists_every_member_with_its_checksum(tmp_path: Path) -> None:
    members = _members(tmp_path / "members")
    archive = tmp_path / "backups" / "wine-mlops-20260101T000000Z.tar"
    archive.parent.mkdir()
    backup.write_archive(archive, members, _manifest())
    manifest = backup.verify_archive(archive, tmp_path / "out")
    assert set(manifest["members"]) == backup.required_members(manifest) == set(members)
    assert "databases/monitoring.dump" in manifest["members"]  # the prediction log
    for name, source in members.items():
        entry = manifest["members"][name]
        assert (entry["sha256"], entry["size"]) == backup.file_digest(source)
        assert (tmp_path / "out" / name).read_bytes() == source.read_bytes()
    assert backup.count_files(tmp_path / "out" / backup.VOLUMES["mlflow-artifacts"]) == 2
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600  # it holds password hashes
    assert [p.name for p in archive.parent.iterdir()] == [archive.name]  # no partial file left


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_tamper, "member databases/tracking.dump fails its checksum"),
        (_tamper_prediction_log, "member databases/monitoring.dump fails its checksum"),
        (_without_prediction_log, "member databases/monitoring.dump is missing"),
        (_without_manifest, "no manifest.json: not a backup archive of this stack"),
        (_random, "not a tar file, so not a backup archive"),
        (_truncated, "truncated or damaged archive"),
        (_unknown_version, "format version 99 is not known (this version reads 1 and 2)"),
        (_member_added, "member databases/extra.dump is not in the manifest"),
    ],
    ids=["tampered-member", "tampered-prediction-log", "prediction-log-missing",
         "missing-manifest", "random-file", "truncated", "unknown-version", "extra-member"],
)  # fmt: skip
def test_a_bad_archive_is_refused_in_one_line_before_docker_is_called(
    archive: Path, tmp_path: Path, damage: Callable[[Path], None], message: str
) -> None:
    damage(archive)
    result, called = _run_restore(archive, tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"restore refused: {archive}: ")
    assert message in result.stderr
    assert not called.exists(), f"docker was called: {called.read_text()}"


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    result, called = _run_restore(tmp_path / "nothing.tar", tmp_path)
    assert result.returncode == 2
    assert result.stderr == f"restore refused: {tmp_path / 'nothing.tar'}: no such file\n"
    assert not called.exists()


def test_a_good_archive_goes_on_to_docker(archive: Path, tmp_path: Path) -> None:
    """The tripwire works: an accepted archive reaches the stack (here a failing `docker`)."""
    result, called = _run_restore(archive, tmp_path)
    assert "every checksum matches" in result.stdout
    assert result.returncode == 1
    assert result.stderr.startswith("restore failed: docker compose")
    assert called.read_text().startswith("compose --env-file")


def test_the_manifest_is_the_first_member(archive: Path) -> None:
    with tarfile.open(archive) as tar:
        first = tar.next()
        assert first is not None
        assert first.name == "manifest.json"
        manifest = json.loads(tar.extractfile(first).read())  # type: ignore[union-attr]
    assert manifest["format"] == "wine-mlops-backup"
    assert manifest["counts"] == {"runs": 6, "predictions": 40, "feedback": 3, "artifact_files": 2}


@pytest.mark.parametrize(
    "manifest",
    [
        _manifest(format_version=1, databases={}),  # made before the prediction log was saved
        _manifest(databases={"monitoring": {"name": "monitoring", "absent": "no database"}}),
    ],
    ids=["version-1", "stack-without-prediction-log"],
)
def test_an_archive_without_the_prediction_log_is_accepted(
    manifest: dict[str, Any], tmp_path: Path
) -> None:
    members = _members(tmp_path / "members")
    del members[backup.DUMPS["monitoring"]]
    archive = tmp_path / "wine-mlops-20260101T000000Z.tar"
    backup.write_archive(archive, members, manifest)
    result, called = _run_restore(archive, tmp_path)
    assert "every checksum matches" in result.stdout
    assert result.stderr.startswith("restore failed: docker compose")  # it went on
    assert called.exists()


# --- The prediction log through a real backup and restore ----------------------------------
#
# `docker` is a stand-in that runs each command it is given where the stack would: psql,
# pg_dump, pg_restore and mlflow-db's ensure step against a real PostgreSQL cluster (set up by
# that same ensure step), a volume's shell script on a local folder. The tool under test runs
# unchanged. MLflow's two databases hold tables of MLflow's names with a few rows (the tool
# only counts them: MLflow itself is the e2e test's part).

_DOCKER = '''#!{python}
"""docker, as tools/backup.py calls it, on a local PostgreSQL cluster and local folders."""
import json, os, sys
state = json.loads(open({state!r}).read())
args = sys.argv[1:]
with open(state["log"], "a") as log:
    log.write(" ".join(args) + "\\n")
pg, env = state["pg"], {{**os.environ, **state["pg"]["env"]}}
if args[0] == "compose":
    args = args[3:]  # compose --env-file FILE
    if args[0] == "config":
        print(json.dumps(state["config"]))
    elif args[0] == "ps":
        print("\\n".join(state["running"]))
    elif args[:2] == ["exec", "-T"]:
        service, command = args[2], args[3:]
        if service == "mlflow-server":
            os.execv(sys.executable, [sys.executable, *command[1:]])
        if command[:2] == ["bash", "/mlflow-db/ensure-roles.sh"]:
            os.execve("/bin/bash", ["bash", state["ensure"]], env)
        os.execve(os.path.join(pg["bindir"], command[0]), command, env)
    sys.exit(0)  # up: mlflow-db is running
if args[:2] == ["image", "inspect"]:
    sys.exit(0)
volumes = state["volumes"]
if args[:2] == ["volume", "inspect"]:
    sys.exit(0 if os.path.isdir(os.path.join(volumes, args[2])) else 1)
if args[:2] == ["volume", "create"]:
    os.makedirs(os.path.join(volumes, args[-1]))
    sys.exit(0)
if args[0] == "run":
    name = args[args.index("-v") + 1].split(":")[0]
    script = args[-1].replace("/volume", os.path.join(volumes, name))
    os.execv("/bin/sh", ["sh", "-euc", script])
sys.exit(f"docker: {{args}}: not expected")
'''

#: MLflow's tables that the manifest counts (columns the tool reads only).
_MLFLOW_TABLES = {
    "tracking": [
        "CREATE TABLE experiments (experiment_id int)",
        "CREATE TABLE runs (run_uuid text)",
        "CREATE TABLE metrics (key text)",
        "CREATE TABLE registered_models (name text)",
        "CREATE TABLE model_versions (version int)",
        "CREATE TABLE registered_model_aliases (alias text)",
        "CREATE TABLE alembic_version (version_num text)",
        "INSERT INTO experiments VALUES (0), (1)",
        "INSERT INTO runs VALUES ('a'), ('b'), ('c')",
        "INSERT INTO alembic_version VALUES ('1b5f0d9ad7c1')",
    ],
    "auth": [
        "CREATE TABLE users (username text, password_hash text)",
        "CREATE TABLE alembic_version_auth (version_num text)",
        "INSERT INTO alembic_version_auth VALUES ('8606fa83a998')",
    ],
}


def _superuser(pg: PostgresServer, sql: str, database: str = "postgres") -> list[tuple[Any, ...]]:
    conn = psycopg2.connect(
        host="127.0.0.1",
        port=pg.port,
        dbname=database,
        user=pg.superuser,
        password=pg.superuser_password,
    )
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


class _FakeStack:
    """The compose project `docker` answers for: one PostgreSQL cluster, local volumes."""

    def __init__(self, pg: PostgresServer, workdir: Path, running: list[str]) -> None:
        workdir.mkdir()
        self.pg, self.workdir = pg, workdir
        (workdir / "volumes").mkdir()
        self.log = workdir / "docker.log"
        admin_password = workdir / "mlflow-admin-password"
        admin_password.write_text("the admin's password\n")
        state = {
            "log": str(self.log),
            "running": running,
            "volumes": str(workdir / "volumes"),
            "ensure": str(REPO / "mlflow-db" / "ensure-roles.sh"),
            "pg": {
                "bindir": str(pg.bindir),
                "env": {
                    "PGHOST": str(pg.socket_dir),
                    "PGPORT": str(pg.port),
                    "LANG": "C.UTF-8",
                    "POSTGRES_USER": pg.superuser,
                    "POSTGRES_DB": pg.database,
                    "MLFLOW_DB_USER": pg.user,
                    "MLFLOW_DB_PASSWORD": pg.password,
                    "MLFLOW_AUTH_DB": pg.auth_database,
                    "MONITORING_DB": pg.monitoring_database,
                    "MONITORING_DB_USER": pg.monitoring_user,
                    "MONITORING_DB_PASSWORD": pg.monitoring_password,
                    "MONITORING_READER_USER": pg.reader_user,
                    "MONITORING_READER_PASSWORD": pg.reader_password,
                },
            },
            "config": {
                "name": "wine-mlops-test",
                "services": {
                    "mlflow-db": {
                        "environment": {
                            "POSTGRES_USER": pg.superuser,
                            "POSTGRES_DB": pg.database,
                            "MLFLOW_DB_USER": pg.user,
                            "MLFLOW_AUTH_DB": pg.auth_database,
                            "MONITORING_DB": pg.monitoring_database,
                            "MONITORING_DB_USER": pg.monitoring_user,
                            "MONITORING_READER_USER": pg.reader_user,
                        }
                    },
                    "mlflow-server": {
                        "image": "wine-mlops/mlflow-server:test",
                        "environment": {"MLFLOW_ADMIN_USERNAME": "admin"},
                    },
                },
                "secrets": {"mlflow-admin-password": {"file": str(admin_password)}},
                "volumes": {key: {"name": f"wine-mlops-test_{key}"} for key in backup.VOLUMES},
            },
        }
        (workdir / "state.json").write_text(json.dumps(state))
        bin_dir = workdir / "bin"
        bin_dir.mkdir()
        docker = bin_dir / "docker"
        docker.write_text(_DOCKER.format(python=sys.executable, state=str(workdir / "state.json")))
        docker.chmod(0o755)
        self.env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}

    def artifacts(self) -> Path:
        return self.workdir / "volumes" / "wine-mlops-test_mlflow-artifacts"

    def tool(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(TOOL), "--env-file", str(self.workdir / "none.env"), *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=300,
        )


def _mlflow_data(pg: PostgresServer) -> None:
    for key, statements in _MLFLOW_TABLES.items():
        database = pg.database if key == "tracking" else pg.auth_database
        for sql in statements:
            _superuser(pg, sql, database)


def _log_predictions(pg: PostgresServer, tmp_path: Path, labelled: int) -> dict[str, int | None]:
    """Logs 25 predictions, ``labelled`` of them with feedback, as the API does (its role,
    its tables); returns every id's true class (None: no feedback)."""
    rows: list[dict[str, Any]] = [
        {
            "id": uuid.uuid4(),
            "model_name": "wine-classifier",
            "model_version": "3",
            "features": [float(i + j) for j in range(len(FEATURE_NAMES))],
            "class_id": i % 3,
            "probabilities": [0.8, 0.1, 0.1],
        }
        for i in range(25)
    ]
    password = pg.write_password_file(tmp_path / "monitoring-db-password")
    engine = connect(pg.monitoring_url(with_password=False), password_file=password)
    try:
        with engine.begin() as conn:
            conn.execute(predictions.insert(), rows)
            conn.execute(
                feedback.insert(),
                [
                    {"prediction_id": r["id"], "true_class_id": r["class_id"]}
                    for r in rows[:labelled]
                ],
            )
    finally:
        engine.dispose()
    return {str(r["id"]): (r["class_id"] if i < labelled else None) for i, r in enumerate(rows)}


def _prediction_log(pg: PostgresServer) -> dict[str, int | None]:
    rows = _superuser(
        pg,
        "SELECT p.id::text, f.true_class_id FROM predictions p "
        "LEFT JOIN feedback f ON f.prediction_id = p.id",
        pg.monitoring_database,
    )
    return dict(rows)


def _privileges(pg: PostgresServer) -> set[tuple[str, str, str]]:
    """Owner and privileges of the prediction log's tables: (table, role, privilege), the
    owner's as (table, role, "OWNER")."""
    rows = _superuser(
        pg,
        "SELECT table_name::text, grantee::text, privilege_type::text"
        " FROM information_schema.role_table_grants WHERE table_schema = 'public'"
        " AND grantee <> (SELECT pg_get_userbyid(relowner) FROM pg_class"
        "   WHERE oid = ('public.' || table_name)::regclass)"
        " UNION SELECT relname::text, pg_get_userbyid(relowner)::text, 'OWNER' FROM pg_class"
        " WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'",
        pg.monitoring_database,
    )
    return {(str(table), str(role), str(privilege)) for table, role, privilege in rows}


def _as_monitoring_sql_grants(pg: PostgresServer) -> set[tuple[str, str, str]]:
    app, reader = pg.monitoring_user, pg.reader_user
    return {
        ("predictions", pg.superuser, "OWNER"), ("feedback", pg.superuser, "OWNER"),
        ("predictions", app, "SELECT"), ("predictions", app, "INSERT"),
        ("predictions", app, "DELETE"), ("feedback", app, "SELECT"), ("feedback", app, "INSERT"),
        ("predictions", reader, "SELECT"), ("feedback", reader, "SELECT"),
    }  # fmt: skip


def _archive_in(folder: Path) -> Path:
    archives = list(folder.iterdir())
    assert len(archives) == 1, archives
    return archives[0]


def _with_changed_manifest(archive: Path, target: Path, change: Callable[[Any], None]) -> Path:
    """A copy whose manifest (not a member: every checksum holds) is changed."""
    with tarfile.open(archive) as source, tarfile.open(target, "w") as copy:
        for member in source.getmembers():
            data = source.extractfile(member)
            assert data is not None
            content = data.read()
            if member.name == "manifest.json":
                manifest = json.loads(content)
                change(manifest)
                content = json.dumps(manifest).encode()
                member.size = len(content)
            copy.addfile(member, io.BytesIO(content))
    return target


@pytest.mark.integration
def test_the_prediction_log_survives_a_backup_and_a_restore_with_its_privileges(
    tmp_path: Path,
) -> None:
    with postgres_server() as source:
        _mlflow_data(source)
        logged = _log_predictions(source, tmp_path, labelled=7)
        # A privilege granted by hand is in the dump's ACLs; the restored log must not get it.
        _superuser(source, "GRANT UPDATE ON predictions TO monitoring_reader", "monitoring")
        stack = _FakeStack(source, tmp_path / "source", running=["mlflow-db", "mlflow-server"])
        stack.artifacts().mkdir()
        (stack.artifacts() / "model.onnx").write_bytes(b"model")
        result = stack.tool("backup", "--dir", str(tmp_path / "backups"))
        assert result.returncode == 0, result.stderr
        assert "database monitoring: dumped" in result.stdout
        assert "(25 predictions, 7 feedback)" in result.stdout
    archive = _archive_in(tmp_path / "backups")
    with tarfile.open(archive) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        assert "databases/monitoring.dump" in tar.getnames()
    assert manifest["format_version"] == 2
    assert manifest["databases"]["monitoring"] == {"name": "monitoring"}
    assert manifest["counts"]["predictions"] == 25
    assert manifest["counts"]["feedback"] == 7

    with postgres_server() as target:  # a new machine: new passwords, an empty log
        stack = _FakeStack(target, tmp_path / "target", running=["mlflow-db"])
        # One prediction more in the manifest than in the dump: refused at the count check,
        # and nothing is left behind.
        wrong = _with_changed_manifest(
            archive,
            tmp_path / "wrong.tar",
            lambda m: m["counts"].update(predictions=m["counts"]["predictions"] + 1),
        )
        failed = stack.tool("restore", str(wrong))
        assert failed.returncode == 1, failed.stderr
        assert "database monitoring_restore: 25 predictions, the manifest says 26" in failed.stderr
        assert "the staging databases and folders were dropped" in failed.stderr
        databases = _superuser(target, "SELECT datname FROM pg_database WHERE NOT datistemplate")
        assert sorted(name for (name,) in databases) == [
            "mlflow", "mlflow_auth", "monitoring", "postgres",
        ]  # fmt: skip
        assert _prediction_log(target) == {}

        restored = stack.tool("restore", str(archive))
        assert restored.returncode == 0, restored.stderr
        assert "databases mlflow, mlflow_auth, monitoring swapped in" in restored.stdout
        assert _prediction_log(target) == logged
        assert _privileges(target) == _as_monitoring_sql_grants(target)
        assert "privileges of monitoring_app and monitoring_reader exactly those" in (
            restored.stdout
        )
        # The API's role of the new machine logs on: a new prediction and its label.
        more = _log_predictions(target, tmp_path, labelled=1)
        assert len(_prediction_log(target)) == len(logged) + len(more)


@pytest.mark.integration
def test_a_stack_without_prediction_log_is_backed_up_and_restored_saying_so(
    tmp_path: Path,
) -> None:
    with postgres_server() as source:  # a volume from before the monitoring loop
        _mlflow_data(source)
        _superuser(source, "DROP DATABASE monitoring")
        stack = _FakeStack(source, tmp_path / "source", running=["mlflow-db", "mlflow-server"])
        stack.artifacts().mkdir()
        result = stack.tool("backup", "--dir", str(tmp_path / "backups"))
        assert result.returncode == 0, result.stderr
        assert (
            "database monitoring: not in the archive: mlflow-db has no database monitoring "
            "(its volume predates the prediction log" in result.stdout
        )
    archive = _archive_in(tmp_path / "backups")
    with tarfile.open(archive) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        assert "databases/monitoring.dump" not in tar.getnames()
    assert "predates the prediction log" in manifest["databases"]["monitoring"]["absent"]
    assert "predictions" not in manifest["counts"]

    with postgres_server() as target:
        stack = _FakeStack(target, tmp_path / "target", running=["mlflow-db"])
        restored = stack.tool("restore", str(archive))
        assert restored.returncode == 0, restored.stderr
        assert "database monitoring: not in the archive (mlflow-db has no database" in (
            restored.stdout
        )
        assert "the prediction log stays empty" in restored.stdout
        assert _prediction_log(target) == {}
        assert _privileges(target) == _as_monitoring_sql_grants(target)
        assert len(_log_predictions(target, tmp_path, labelled=2)) == 25
