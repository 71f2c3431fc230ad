"""`make restore` checks the whole archive first: a bad one is refused before Docker is asked.

Each case runs the real command (``tools/backup.py restore``) with a ``docker`` on its PATH
that only writes down that it was called: a refused archive must leave it uncalled, and the
good archive shows that the command does reach Docker once the archive is accepted.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import REPO

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
        "counts": {"runs": 6, "artifact_files": 2},
        **changes,
    }


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    """A well-formed archive, written by the backup's own writer."""
    target = tmp_path / "wine-mlops-20260101T000000Z.tar"
    backup.write_archive(target, _members(tmp_path / "members"), _manifest())
    return target


def _tamper(archive: Path) -> None:
    """Flips one byte in the middle of the tracking dump; sizes stay the same."""
    with tarfile.open(archive) as tar:
        member = tar.getmember(backup.DUMPS["tracking"])
    with archive.open("r+b") as file:
        file.seek(member.offset_data + member.size // 2)
        byte = file.read(1)
        file.seek(-1, os.SEEK_CUR)
        file.write(bytes([byte[0] ^ 0xFF]))


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
    assert set(manifest["members"]) == set(backup.REQUIRED) == set(members)
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
        (_without_manifest, "no manifest.json: not a backup archive of this stack"),
        (_random, "not a tar file, so not a backup archive"),
        (_truncated, "truncated or damaged archive"),
        (_unknown_version, "format version 99 is not known (this version reads 1)"),
        (_member_added, "member databases/extra.dump is not in the manifest"),
    ],
    ids=["tampered-member", "missing-manifest", "random-file", "truncated", "unknown-version",
         "extra-member"],
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
    assert manifest["counts"] == {"runs": 6, "artifact_files": 2}
