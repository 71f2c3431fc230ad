"""tools/smoke.py against a real MLflow server (SQLite) and a real training session."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import pytest

from tests.support.processes import REPO, MlflowServer, free_port, start_mlflow_server, stop

pytestmark = pytest.mark.integration

SMOKE = REPO / "tools" / "smoke.py"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    workdir = tmp_path_factory.mktemp("smoke-mlflow")
    server = start_mlflow_server(
        workdir, {"MLFLOW_BACKEND_STORE_URI": f"sqlite:///{workdir / 'mlflow.db'}"}
    )
    yield server
    stop(server.process)


@pytest.fixture(scope="module")
def trained_model(server: MlflowServer) -> str:
    """A model name with a champion, from one short real training session."""
    model = f"smoke-{uuid.uuid4().hex[:8]}"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "model_training",
            "--candidates",
            "LogisticRegression",
            "--cv-folds",
            "2",
        ],
        env={
            **os.environ,
            "MLFLOW_TRACKING_URI": server.url,
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "WINE_EXPERIMENT_NAME": model,
            "WINE_MODEL_NAME": model,
        },
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return model


def smoke(reports: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Runs the smoke tool as ``make smoke`` does, with explicit services instead of compose."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WINE_", "SMOKE_"))}
    return subprocess.run(
        [sys.executable, str(SMOKE), "--reports", str(reports), "--wait", "2", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def lines_of(output: str, status: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(status)]


def test_a_trained_stack_passes_and_the_summary_names_the_champion(
    server: MlflowServer, trained_model: str, tmp_path: Path
) -> None:
    result = smoke(
        tmp_path,
        "--service",
        f"mlflow-server={server.url}",
        "--model-name",
        trained_model,
        "--min-accuracy",
        "0.8",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    passed = lines_of(result.stdout, "PASS")
    assert [line.split()[1:3] for line in passed] == [
        ["mlflow-server", "health"],
        ["mlflow-server", "champion"],
    ]
    assert f"model '{trained_model}' @champion is v1, accuracy" in result.stdout
    # Services the stack does not define yet are skipped, each on its own line.
    skipped = {line.split()[1] for line in lines_of(result.stdout, "SKIP")}
    assert skipped == {"prediction-api", "mlflow-exporter", "prometheus", "grafana"}
    summary = (tmp_path / "summary.txt").read_text()
    expected = rf"smoke passed; champion {trained_model} v1, accuracy [01]\.\d{{4}}; "
    assert re.match(expected, summary), summary
    assert f"mlflow-server {server.url}" in summary
    suite = ElementTree.parse(tmp_path / "smoke-junit.xml").getroot()  # noqa: S314 (our file)
    assert suite.get("tests") == "10"
    assert suite.get("failures") == "0"
    assert suite.get("skipped") == "8"


def test_a_model_without_champion_fails_the_smoke_test(
    server: MlflowServer, tmp_path: Path
) -> None:
    result = smoke(
        tmp_path, "--service", f"mlflow-server={server.url}", "--model-name", "never-trained"
    )
    assert result.returncode == 1
    (failed,) = lines_of(result.stdout, "FAIL")
    assert "mlflow-server champion" in failed
    assert "no 'champion' alias on model 'never-trained'" in failed
    assert "smoke FAILED (1 checks); no champion" in (tmp_path / "summary.txt").read_text()
    suite = ElementTree.parse(tmp_path / "smoke-junit.xml").getroot()  # noqa: S314 (our file)
    assert suite.get("failures") == "1"


def test_a_champion_below_the_accuracy_floor_fails(
    server: MlflowServer, trained_model: str, tmp_path: Path
) -> None:
    result = smoke(
        tmp_path,
        "--service",
        f"mlflow-server={server.url}",
        "--model-name",
        trained_model,
        "--min-accuracy",
        "1.01",
    )
    assert result.returncode == 1
    assert "is below the floor 1.0100" in result.stdout


def test_a_deployed_service_that_does_not_answer_fails(
    server: MlflowServer, trained_model: str, tmp_path: Path
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    result = smoke(
        tmp_path,
        "--service",
        f"mlflow-server={server.url}",
        "--service",
        f"prediction-api={dead}",
        "--model-name",
        trained_model,
    )
    assert result.returncode == 1
    failed = lines_of(result.stdout, "FAIL")
    assert len(failed) == 3  # ready, predict, metrics: each reported on its own
    assert all("prediction-api" in line and "unreachable" in line for line in failed)


def test_bad_arguments_exit_2(tmp_path: Path) -> None:
    assert smoke(tmp_path).returncode == 2
    assert smoke(tmp_path, "--service", "unknown=http://x").returncode == 2


def test_compose_mode_checks_the_services_compose_deployed(
    server: MlflowServer, trained_model: str, tmp_path: Path
) -> None:
    """``--compose`` asks ``docker compose`` (here a stand-in CLI) for services and ports."""
    port = server.url.rsplit(":", 1)[1]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(
        "#!/bin/sh\n"
        'echo "$*" >> "$(dirname "$0")/calls"\n'
        'case "$*" in\n'
        '  *"ps --all --services"*) printf "mlflow-db\\nmlflow-server\\n" ;;\n'
        f'  *"port mlflow-server 5000"*) echo "0.0.0.0:{port}" ;;\n'
        "  *) exit 1 ;;\n"
        "esac\n"
    )
    docker.chmod(0o755)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("WINE_", "SMOKE_"))},
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "WINE_MODEL_NAME": trained_model,
    }
    result = subprocess.run(
        [
            sys.executable,
            str(SMOKE),
            "--compose",
            "--env-file",
            "stack.env",
            "--reports",
            str(tmp_path / "reports"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(lines_of(result.stdout, "PASS")) == 2
    calls = (bin_dir / "calls").read_text()
    assert "compose --env-file stack.env ps --all --services" in calls
    # A port published on every address is opened on the loopback address.
    summary = (tmp_path / "reports" / "summary.txt").read_text()
    assert f"mlflow-server http://127.0.0.1:{port}" in summary
