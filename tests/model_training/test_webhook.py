"""The retraining webhook's contract, in process, with a stand-in session command.

The session here is a real subprocess that waits until the test releases it and then exits
with the code the test chose; tests/integration/test_retraining.py runs the real training
session behind the real receiver process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from devstack import free_port, metric_value
from model_training.webhook import WebhookSettings, create_app, session_command
from wine_mlops.waiting import wait_until

TOKEN = "a-token-of-at-least-16-characters"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
#: Waits until the file named by argv[1] exists, then exits with the code it holds.
STAND_IN = (
    "import pathlib, sys, time\n"
    "path = pathlib.Path(sys.argv[1])\n"
    "print('session for', sys.argv[2], 'started', flush=True)\n"
    "while not path.exists():\n"
    "    time.sleep(0.05)\n"
    "sys.exit(int(path.read_text()))\n"
)


def payload(name: str = "WineLiveAccuracyLow", status: str = "firing") -> dict[str, Any]:
    """An Alertmanager notification (version 4) of one alert, as Alertmanager sends it."""
    alert = {
        "status": status,
        "labels": {"alertname": name, "severity": "warning", "model_version": "3"},
        "annotations": {"summary": "live accuracy below the floor"},
        "startsAt": "2026-11-28T00:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": "0123456789abcdef",
    }
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{name}"}}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "retraining",
        "groupLabels": {"alertname": name},
        "commonLabels": alert["labels"],
        "commonAnnotations": alert["annotations"],
        "externalURL": "http://alertmanager:9093",
        "alerts": [alert],
    }


class Receiver:
    """A receiver app whose sessions the test releases with an exit code."""

    def __init__(self, tmp_path: Path, cooldown: float) -> None:
        self.release_file = tmp_path / "release"
        self.commands: list[list[str]] = []
        settings = WebhookSettings.model_validate(
            {"WINE_RETRAIN_WEBHOOK_TOKEN": TOKEN, "WINE_RETRAIN_COOLDOWN_SECONDS": cooldown}
        )

        def command(alertname: str) -> list[str]:
            self.commands.append(session_command(alertname))
            return [sys.executable, "-c", STAND_IN, str(self.release_file), alertname]

        self.client = TestClient(create_app(settings, command))

    def post(self, body: Any, headers: dict[str, str] | None = None) -> Any:
        return self.client.post("/alerts", json=body, headers=AUTH if headers is None else headers)

    def finish(self, exit_code: int) -> dict[str, Any]:
        """Lets the running session end with ``exit_code``; returns /status once it ended."""
        self.release_file.write_text(str(exit_code))

        def ended() -> dict[str, Any] | None:
            status: dict[str, Any] = self.client.get("/status").json()
            return None if status["running"] else status

        status = wait_until(ended, "the session to end", timeout=30, interval=0.05)
        self.release_file.unlink()
        return status

    def count(self, alertname: str, result: str) -> float | None:
        text = self.client.get("/metrics").text
        return metric_value(
            text, "wine_retraining_sessions_total", alertname=alertname, result=result
        )


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    made = Receiver(tmp_path, cooldown=3600)
    with made.client:
        yield made
    made.release_file.write_text("0")  # a session still waiting ends


def test_callers_without_the_token_are_refused(receiver: Receiver) -> None:
    for headers in ({}, {"Authorization": "Bearer not-the-token"}, {"Authorization": TOKEN}):
        response = receiver.post(payload(), headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.headers["content-type"] == "application/problem+json"
        assert TOKEN not in response.text
    # not even a malformed body gets further than the token check
    response = receiver.client.post("/alerts", content=b"{", headers={"Authorization": "x"})
    assert response.status_code == 401
    assert receiver.commands == []
    assert receiver.client.get("/status").json()["last_session"] is None


def test_other_alerts_and_resolved_ones_are_ignored(receiver: Receiver) -> None:
    for body in (payload("WineApiDown"), payload("WineLiveAccuracyLow", status="resolved")):
        response = receiver.post(body)
        assert response.status_code == 200
        assert response.json()["status"] == "ignored"
    assert receiver.commands == []
    assert receiver.count("WineLiveAccuracyLow", "started") == 0


def test_a_payload_that_is_not_alertmanagers_is_refused(receiver: Receiver) -> None:
    for body in ({"version": "3", **{k: v for k, v in payload().items() if k != "version"}},
                 {"alerts": "everything"}, [1, 2]):  # fmt: skip
        response = receiver.post(body)
        assert response.status_code == 422, response.text
        assert "Alertmanager webhook payload of version 4" in response.json()["detail"]
    too_large = {**payload(), "receiver": "x" * 1_100_000}
    assert receiver.post(too_large).status_code == 413
    assert receiver.commands == []


def test_a_firing_alert_starts_one_session_then_busy_then_cooldown(receiver: Receiver) -> None:
    started = receiver.post(payload("WineLiveAccuracyLow"))
    assert started.status_code == 202, started.text
    assert started.json()["session"]["alertname"] == "WineLiveAccuracyLow"
    assert receiver.commands == [
        [sys.executable, "-m", "model_training", "--with-feedback", "--triggered-by",
         "WineLiveAccuracyLow"]
    ]  # fmt: skip

    busy = receiver.post(payload("WineFeatureDrift"))
    assert busy.status_code == 409
    assert "a retraining session is running" in busy.json()["detail"]
    status = receiver.client.get("/status").json()
    assert status["running"] is True
    assert status["last_session"]["result"] == "running"

    ended = receiver.finish(0)
    assert ended["last_session"]["exit_code"] == 0
    assert ended["last_session"]["result"] == "succeeded"
    assert ended["last_session"]["ended_at"] is not None

    cooldown = receiver.post(payload("WineLiveAccuracyLow"))
    assert cooldown.status_code == 429
    retry_after = int(cooldown.headers["retry-after"])
    assert 3500 < retry_after <= 3600
    assert len(receiver.commands) == 1  # nothing else started

    assert receiver.count("WineLiveAccuracyLow", "started") == 1
    assert receiver.count("WineFeatureDrift", "busy") == 1
    assert receiver.count("WineLiveAccuracyLow", "cooldown") == 1
    assert receiver.count("WineLiveAccuracyLow", "succeeded") == 1
    assert receiver.count("WineLiveAccuracyLow", "failed") == 0
    text = receiver.client.get("/metrics").text
    last = metric_value(text, "wine_retraining_last_session_timestamp_seconds")
    assert last is not None
    assert last > 1.7e9
    assert metric_value(text, "wine_retraining_session_running") == 0


def test_a_failed_session_is_counted_and_without_cooldown_another_starts(
    tmp_path: Path,
) -> None:
    receiver = Receiver(tmp_path, cooldown=0)
    with receiver.client:
        assert receiver.post(payload("WineFeatureDrift")).status_code == 202
        ended = receiver.finish(3)
        assert ended["last_session"]["exit_code"] == 3
        assert ended["last_session"]["result"] == "failed"
        assert receiver.count("WineFeatureDrift", "failed") == 1
        assert receiver.post(payload("WineFeatureDrift")).status_code == 202
        receiver.finish(0)
    assert receiver.count("WineFeatureDrift", "started") == 2


def test_the_token_is_required_and_not_a_trivial_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WINE_RETRAIN_WEBHOOK_TOKEN", raising=False)
    with pytest.raises(ValidationError, match="WINE_RETRAIN_WEBHOOK_TOKEN"):
        WebhookSettings()  # type: ignore[call-arg]  # the token comes from the environment
    with pytest.raises(ValidationError, match="at least 16 characters"):
        WebhookSettings.model_validate({"WINE_RETRAIN_WEBHOOK_TOKEN": "short"})


def test_the_token_comes_from_its_secret_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = tmp_path / "retraining-webhook-token"
    secret.write_text(f"{TOKEN}\n")
    monkeypatch.setenv("WINE_RETRAIN_WEBHOOK_TOKEN_FILE", str(secret))
    settings = WebhookSettings()  # type: ignore[call-arg]  # the token comes from its file
    assert settings.token.get_secret_value() == TOKEN
    assert TOKEN not in repr(settings)
    assert settings.port == 8090
    assert settings.cooldown_seconds == 3600


def test_the_receiver_refuses_to_serve_when_sessions_could_not_read_feedback(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WINE_", "MLFLOW_"))}
    env["WINE_RETRAIN_WEBHOOK_TOKEN"] = TOKEN
    env["WINE_RETRAIN_WEBHOOK_PORT"] = str(free_port())
    result = subprocess.run(
        [sys.executable, "-m", "model_training.webhook"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert "invalid setting WINE_MONITORING_DB_URL" in result.stderr
    assert TOKEN not in result.stderr + result.stdout
