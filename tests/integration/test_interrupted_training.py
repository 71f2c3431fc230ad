"""A real training process stopped by SIGTERM or SIGINT, against a real MLflow server.

The trainer talks to MLflow through a small forwarding proxy run by the test. The proxy
sends the signal when it sees the request that marks the moment to interrupt (a nested run
being created, the champion alias being set) and forwards the request afterwards, so the
signal lands at that exact point of the session, without any hook in the training code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.server
import json
import os
import signal
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from devstack import MlflowServer, free_port, training_command, training_env
from model_training.promotion_lock import lock_name

pytestmark = pytest.mark.integration

#: Headers a proxy must not copy between its two connections (RFC 9110, section 7.6.1).
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


@dataclass
class Trigger:
    """Which request interrupts the trainer, and with which signal."""

    method: str
    path: str
    matches: Callable[[dict], bool]
    signum: int
    fired: threading.Event = dataclasses.field(default_factory=threading.Event)


def _proxy_handler(upstream: str, trigger: Trigger, trainer: Callable[[], int]) -> type:
    class Forward(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if (
                not trigger.fired.is_set()
                and self.command == trigger.method
                and self.path.split("?")[0] == trigger.path
                and trigger.matches(json.loads(body or b"{}"))
            ):
                trigger.fired.set()
                os.kill(trainer(), trigger.signum)  # the trainer now waits for this answer
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            answer = requests.request(
                self.command, upstream + self.path, data=body, headers=headers, timeout=120
            )
            self.send_response(answer.status_code)
            for key, value in answer.headers.items():
                if key.lower() not in HOP_BY_HOP | {"content-encoding"}:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(answer.content)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward  # noqa: N815

    return Forward


@contextlib.contextmanager
def interrupting_proxy(
    upstream: str, trigger: Trigger, trainer: Callable[[], int]
) -> Iterator[str]:
    """A proxy to ``upstream`` that signals the trainer on the trigger request; yields its URL."""
    port = free_port()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", port), _proxy_handler(upstream, trigger, trainer)
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()


def train_interrupted(
    server: MlflowServer, trigger: Trigger, names: dict[str, str], log_path: Path
) -> subprocess.CompletedProcess[str]:
    """Runs ``python -m model_training`` through the proxy until it exits; returns its result."""
    process: subprocess.Popen[str] | None = None
    with (
        interrupting_proxy(server.url, trigger, lambda: process.pid if process else 0) as url,
        log_path.open("w") as log,
    ):
        process = subprocess.Popen(
            training_command(candidates="LogisticRegression,DummyClassifier"),
            env=training_env(url, **names),
            stdout=subprocess.DEVNULL,
            stderr=log,
            text=True,
        )
        code = process.wait(timeout=600)
    return subprocess.CompletedProcess(process.args, code, "", log_path.read_text())


@pytest.fixture
def names() -> dict[str, str]:
    suffix = uuid.uuid4().hex[:8]
    return {"WINE_EXPERIMENT_NAME": f"stopped-{suffix}", "WINE_MODEL_NAME": f"stopped-{suffix}"}


def _session_runs(client: MlflowClient, experiment_name: str) -> dict[str, list[str]]:
    """The runs of the experiment by status: ``{"KILLED": [run names], ...}``."""
    experiment = client.get_experiment_by_name(experiment_name)
    assert experiment is not None
    by_status: dict[str, list[str]] = {}
    for run in client.search_runs([experiment.experiment_id]):
        by_status.setdefault(run.info.status, []).append(run.info.run_name)
    return by_status


def _lock_is_released(client: MlflowClient, model: str) -> bool:
    try:
        client.get_registered_model(lock_name(model))
    except MlflowException as exc:
        return exc.error_code == "RESOURCE_DOES_NOT_EXIST"
    return False


def test_sigterm_while_a_candidate_trains_kills_the_runs_and_registers_nothing(
    mlflow_server: MlflowServer, names: dict[str, str], tmp_path: Path
) -> None:
    trigger = Trigger(  # a nested run is being created: a candidate's training begins
        "POST",
        "/api/2.0/mlflow/runs/create",
        lambda run: any(tag["key"] == "mlflow.parentRunId" for tag in run.get("tags", [])),
        signal.SIGTERM,
    )
    result = train_interrupted(mlflow_server, trigger, names, tmp_path / "train.log")

    assert trigger.fired.is_set()
    assert result.returncode == 143, result.stderr[-3000:]
    assert "SIGTERM received while starting a run" in result.stderr
    assert "its runs are marked KILLED" in result.stderr
    assert "Traceback" not in result.stderr
    client = MlflowClient(mlflow_server.url)
    runs = _session_runs(client, names["WINE_EXPERIMENT_NAME"])
    assert list(runs) == ["KILLED"], runs  # the parent and the candidate being trained
    assert sorted(runs["KILLED"])[0] == "LogisticRegression"
    assert len(runs["KILLED"]) == 2
    assert client.search_model_versions(f"name='{names['WINE_MODEL_NAME']}'") == []
    assert _lock_is_released(client, names["WINE_MODEL_NAME"])


def test_sigint_while_the_alias_moves_completes_the_version_first(
    mlflow_server: MlflowServer, names: dict[str, str], tmp_path: Path
) -> None:
    model = names["WINE_MODEL_NAME"]
    trigger = Trigger(  # the new version is registered, its alias about to be set
        "POST",
        "/api/2.0/mlflow/registered-models/alias",
        lambda request: request.get("alias") == "champion",
        signal.SIGINT,
    )
    result = train_interrupted(mlflow_server, trigger, names, tmp_path / "train.log")

    assert trigger.fired.is_set()
    assert result.returncode == 130, result.stderr[-3000:]
    assert "SIGINT received while registering the new version" in result.stderr
    assert "Traceback" not in result.stderr
    client = MlflowClient(mlflow_server.url)
    versions = client.search_model_versions(f"name='{model}'")
    assert [v.version for v in versions] == ["1"]
    champion = client.get_model_version_by_alias(model, "champion")
    assert champion.version == "1"
    assert "no champion yet" in champion.tags["promotion_reason"]
    assert champion.tags["promotion"] == "champion"
    runs = _session_runs(client, names["WINE_EXPERIMENT_NAME"])
    assert set(runs) == {"KILLED", "FINISHED"}, runs  # never RUNNING, never FAILED
    assert len(runs["KILLED"]) == 1  # the parent; both candidates had finished
    assert sorted(runs["FINISHED"]) == ["DummyClassifier", "LogisticRegression"]
    assert _lock_is_released(client, model)
