"""Training with MLflow's artifact store full: a clear failure, the champion untouched.

A real MLflow server (PostgreSQL tracking store) keeps its artifacts on a small tmpfs that
the test mounts (the tests run as root, as in CI). The first session fits in it; then the
test fills the tmpfs, and a second session must fail with one clear line while the champion
stays and a real prediction API keeps answering.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from mlflow.tracking import MlflowClient

from devstack import MlflowServer, postgres_server, run_training, start_api, start_mlflow_server
from wine_mlops.features import FEATURE_NAMES, load_wine_frame

pytestmark = pytest.mark.integration

#: Room for one small session's artifacts (a few hundred KiB), nothing to spare.
TMPFS_SIZE = "8m"


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """Mounts a tmpfs of ``size`` at ``path`` (needs root), unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
        check=True,
        capture_output=True,
    )
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=True, capture_output=True)


def fill(folder: Path) -> None:
    """Writes one file into ``folder`` until its file system has no space left."""
    block = b"\0" * (1 << 20)
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while True:
            try:
                os.write(fd, block)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                if len(block) == 1:
                    return
                block = block[: len(block) // 2]
    finally:
        os.close(fd)


@pytest.fixture(scope="module")
def full_disk_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A tracking server whose artifact destination is a small tmpfs (PostgreSQL store)."""
    workdir = tmp_path_factory.mktemp("mlflow-small-disk")
    with tmpfs(workdir / "artifacts", TMPFS_SIZE), postgres_server() as pg:
        server = start_mlflow_server(workdir, pg.env)
        try:
            yield server
        finally:
            server.stop()


def test_a_full_artifact_store_fails_clearly_and_keeps_the_champion(
    full_disk_server: MlflowServer, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    names = {"WINE_EXPERIMENT_NAME": f"full-{suffix}", "WINE_MODEL_NAME": f"full-{suffix}"}
    model = names["WINE_MODEL_NAME"]
    first = run_training(full_disk_server.url, candidates="LogisticRegression", **names)
    assert first.returncode == 0, first.stderr[-3000:]
    client = MlflowClient(full_disk_server.url)
    assert client.get_model_version_by_alias(model, "champion").version == "1"
    api = start_api(full_disk_server.url, tmp_path, WINE_MODEL_NAME=model)
    try:
        fill(Path(full_disk_server.log_path).parent / "artifacts")

        second = run_training(
            full_disk_server.url,
            candidates="RandomForestClassifier,LogisticRegression",
            # MLflow's client retries a failed request 7 times with exponential backoff
            # (about 4 minutes for the same outcome); two retries show the same behaviour.
            MLFLOW_HTTP_REQUEST_MAX_RETRIES="2",
            **names,
        )

        assert second.returncode == 1, second.stderr[-3000:]
        errors = [line for line in second.stderr.splitlines() if " ERROR " in line]
        assert len(errors) == 1, second.stderr[-3000:]
        assert "training failed while logging to MLflow" in errors[0]
        assert "nothing was registered and champion v1 is unchanged" in errors[0]
        assert "free space" in errors[0]
        assert "Traceback" not in second.stderr
        assert client.get_model_version_by_alias(model, "champion").version == "1"
        assert [v.version for v in client.search_model_versions(f"name='{model}'")] == ["1"]
        first_wine = load_wine_frame()[list(FEATURE_NAMES)].iloc[0]
        wine = {name: float(first_wine[name]) for name in FEATURE_NAMES}
        answer = httpx.post(f"{api.url}/predict", json=wine, timeout=30)
        assert answer.status_code == 200, answer.text
        assert str(answer.json()["model_version"]) == "1"
    finally:
        api.stop()
