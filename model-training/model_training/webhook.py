"""The retraining webhook: Alertmanager calls it, it starts a training session on feedback.

``python -m model_training.webhook`` serves (uvicorn, one process, port 8090):

- ``POST /alerts``: Alertmanager's webhook payload (version 4) with
  ``Authorization: Bearer <token>`` (the token of ``WINE_RETRAIN_WEBHOOK_TOKEN_FILE``,
  compared in constant time; 401 without it or with another one). Only firing alerts named
  in :data:`RETRAINING_ALERTS` count; any other payload is answered 200 ``ignored``. One
  session at a time (409 while one runs) and a cooldown after a session starts (429 with
  ``Retry-After`` inside it); 202 when a session starts. The session is the subprocess
  ``python -m model_training --with-feedback --triggered-by <alertname>``, with the
  receiver's environment (MLflow login, prediction log); its output goes to the receiver's
  log, each line prefixed with ``[retraining <alertname>]``.
- ``GET /healthz``: 200 while the receiver serves.
- ``GET /status``: whether a session runs, the cooldown left, and the last session
  (alert, start, end, exit code, result).
- ``GET /metrics``: ``wine_retraining_sessions_total{alertname,result}`` (``started``,
  ``busy``, ``cooldown``, ``succeeded``, ``failed``), ``wine_retraining_session_running``
  and ``wine_retraining_last_session_timestamp_seconds`` (when the last session started).

SIGTERM (``docker stop``) stops the receiver: a session still running gets SIGTERM too (it
ends its runs as KILLED and registers either a complete version or none), is waited for up
to ``WINE_RETRAIN_STOP_SECONDS`` and killed after that; the receiver then exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType
from typing import Any, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    disable_created_metrics,
    generate_latest,
)
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from wine_mlops.logs import configure_logging
from wine_mlops.settings import ServiceSettings, load_settings

log = logging.getLogger("model_training.webhook")
session_log = logging.getLogger("model_training.webhook.session")

#: The alerts that start a retraining session; every other alert is ignored.
RETRAINING_ALERTS: tuple[str, ...] = ("WineFeatureDrift", "WineLiveAccuracyLow")
#: The results counted in ``wine_retraining_sessions_total``.
RESULTS: tuple[str, ...] = ("started", "busy", "cooldown", "succeeded", "failed")
#: The largest alert payload read; Alertmanager's are a few kilobytes.
MAX_BODY_BYTES = 1_000_000
PROBLEM_MEDIA_TYPE = "application/problem+json"
#: The shortest bearer token accepted.
MIN_TOKEN_LENGTH = 16


class WebhookSettings(ServiceSettings):
    """The receiver's settings.

    Environment variables: ``WINE_RETRAIN_WEBHOOK_TOKEN`` (or, as in the stack,
    ``WINE_RETRAIN_WEBHOOK_TOKEN_FILE``; required, at least 16 characters),
    ``WINE_RETRAIN_COOLDOWN_SECONDS`` (3600), ``WINE_RETRAIN_SESSION_TIMEOUT_SECONDS``
    (3600: a session running longer gets SIGTERM), ``WINE_RETRAIN_STOP_SECONDS`` (20: how
    long a stopping receiver waits for its session), ``WINE_RETRAIN_WEBHOOK_HOST``
    (0.0.0.0), ``WINE_RETRAIN_WEBHOOK_PORT`` (8090), ``LOG_LEVEL``. The session reads the
    training settings (``MLFLOW_*``, ``WINE_MONITORING_DB_*``, ``WINE_CANDIDATES``, …) from
    the same environment.
    """

    token: SecretStr = Field(validation_alias="WINE_RETRAIN_WEBHOOK_TOKEN")
    cooldown_seconds: float = Field(
        default=3600.0, ge=0, validation_alias="WINE_RETRAIN_COOLDOWN_SECONDS"
    )
    session_timeout_seconds: float = Field(
        default=3600.0, gt=0, validation_alias="WINE_RETRAIN_SESSION_TIMEOUT_SECONDS"
    )
    stop_seconds: float = Field(default=20.0, ge=0, validation_alias="WINE_RETRAIN_STOP_SECONDS")
    host: str = Field(default="0.0.0.0", validation_alias="WINE_RETRAIN_WEBHOOK_HOST")  # noqa: S104
    port: int = Field(default=8090, ge=1, le=65535, validation_alias="WINE_RETRAIN_WEBHOOK_PORT")

    @field_validator("token")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value().strip()) < MIN_TOKEN_LENGTH:
            raise ValueError(
                f"the token must have at least {MIN_TOKEN_LENGTH} characters (make env writes "
                "a random one)"
            )
        return value


# --- Alertmanager's payload (https://prometheus.io/docs/alerting/latest/configuration/#webhook_config)


class Alert(BaseModel):
    """One alert of a notification."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime | None = Field(default=None, alias="startsAt")
    ends_at: datetime | None = Field(default=None, alias="endsAt")
    generator_url: str | None = Field(default=None, alias="generatorURL")
    fingerprint: str | None = None


class AlertmanagerPayload(BaseModel):
    """A notification of Alertmanager's webhook receiver, version 4."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    version: Literal["4"]
    status: Literal["firing", "resolved"]
    receiver: str = ""
    group_key: str | None = Field(default=None, alias="groupKey")
    truncated_alerts: int = Field(default=0, ge=0, alias="truncatedAlerts")
    group_labels: dict[str, str] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[str, str] = Field(default_factory=dict, alias="commonLabels")
    common_annotations: dict[str, str] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str | None = Field(default=None, alias="externalURL")
    alerts: list[Alert] = Field(max_length=1000)

    def retraining_alert(self) -> str | None:
        """The name of the first firing alert that calls for retraining, if any."""
        for alert in self.alerts:
            name = alert.labels.get("alertname")
            if alert.status == "firing" and name in RETRAINING_ALERTS:
                return name
        return None


# --- the sessions


@dataclass
class SessionRecord:
    """One retraining session: what started it, when, and how it ended."""

    alertname: str
    started_at: float
    pid: int
    ended_at: float | None = None
    exit_code: int | None = None

    @property
    def result(self) -> str:
        """``running``, ``succeeded`` (exit code 0) or ``failed``."""
        if self.exit_code is None:
            return "running"
        return "succeeded" if self.exit_code == 0 else "failed"

    def as_dict(self) -> dict[str, Any]:
        """The record as /status shows it (times in ISO 8601, UTC)."""

        def iso(stamp: float | None) -> str | None:
            return None if stamp is None else datetime.fromtimestamp(stamp, UTC).isoformat()

        return {
            "alertname": self.alertname,
            "started_at": iso(self.started_at),
            "ended_at": iso(self.ended_at),
            "exit_code": self.exit_code,
            "result": self.result,
            "pid": self.pid,
        }


@dataclass(frozen=True)
class Outcome:
    """What the receiver did with a retraining alert."""

    result: Literal["started", "busy", "cooldown"]
    session: SessionRecord | None = None
    retry_after_seconds: float = 0.0


class RetrainingMetrics:
    """The receiver's Prometheus metrics, in a registry of their own."""

    def __init__(self) -> None:
        # like the API's and the exporter's counters: no ``_created`` series (a switch of
        # the whole process, which serves only these metrics)
        disable_created_metrics()
        self.registry = CollectorRegistry(auto_describe=True)
        self.sessions = Counter(
            "wine_retraining_sessions",
            "Retraining alerts received, by alert and what became of them: started, busy (a "
            "session was running), cooldown (too soon after the last start); and sessions "
            "ended, succeeded (exit code 0) or failed",
            ["alertname", "result"],
            registry=self.registry,
        )
        self.last_session = Gauge(
            "wine_retraining_last_session_timestamp_seconds",
            "When the last retraining session started (Unix time; 0: none yet)",
            registry=self.registry,
        )
        self.running = Gauge(
            "wine_retraining_session_running",
            "1 while a retraining session runs, else 0",
            registry=self.registry,
        )
        for alertname in RETRAINING_ALERTS:  # every series exists from the start, at 0
            for result in RESULTS:
                self.sessions.labels(alertname=alertname, result=result)

    def exposition(self) -> bytes:
        """The metrics in Prometheus's text format."""
        return generate_latest(self.registry)


def session_command(alertname: str) -> list[str]:
    """The command of a retraining session started by the alert ``alertname``."""
    return [
        sys.executable,
        "-m",
        "model_training",
        "--with-feedback",
        "--triggered-by",
        alertname,
    ]


class Retrainer:
    """Starts retraining sessions, one at a time, at most one per cooldown.

    Args:
        metrics: Where sessions are counted.
        cooldown_seconds: Seconds after a session's start during which no other starts.
        timeout_seconds: A session running longer than this gets SIGTERM.
        command: The command line of a session, given the alert's name.
    """

    def __init__(
        self,
        metrics: RetrainingMetrics,
        cooldown_seconds: float,
        timeout_seconds: float,
        command: Callable[[str], Sequence[str]] = session_command,
    ) -> None:
        self._metrics = metrics
        self._cooldown = cooldown_seconds
        self._timeout = timeout_seconds
        self._command = command
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._last: SessionRecord | None = None
        self._last_start_monotonic: float | None = None
        self._watcher: threading.Thread | None = None

    def start(self, alertname: str) -> Outcome:
        """Starts a session for ``alertname`` unless one runs or the cooldown holds.

        Raises:
            OSError: When the session's process cannot be started (nothing is counted).
        """
        with self._lock:
            if self._process is not None:
                self._metrics.sessions.labels(alertname=alertname, result="busy").inc()
                return Outcome("busy", self._last)
            if self._last_start_monotonic is not None:
                left = self._last_start_monotonic + self._cooldown - time.monotonic()
                if left > 0:
                    self._metrics.sessions.labels(alertname=alertname, result="cooldown").inc()
                    return Outcome("cooldown", self._last, retry_after_seconds=left)
            command = list(self._command(alertname))
            process = subprocess.Popen(  # noqa: S603 (our own module, a fixed argument list)
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                # the receiver's environment, less its own settings (the token's file)
                env={k: v for k, v in os.environ.items() if not k.startswith("WINE_RETRAIN_")},
            )
            record = SessionRecord(alertname, time.time(), process.pid)
            self._process = process
            self._last = record
            self._last_start_monotonic = time.monotonic()
            self._metrics.sessions.labels(alertname=alertname, result="started").inc()
            self._metrics.last_session.set(record.started_at)
            self._metrics.running.set(1)
            self._watcher = threading.Thread(
                target=self._watch,
                args=(process, record),
                name=f"retraining-{process.pid}",
                daemon=True,
            )
            self._watcher.start()
        log.info(
            "alert %s: started retraining session (pid %d): %s",
            alertname,
            process.pid,
            " ".join(command[1:]),
        )
        return Outcome("started", record)

    def _watch(self, process: subprocess.Popen[bytes], record: SessionRecord) -> None:
        """Relays the session's output to the log, then records how it ended."""
        timer = threading.Timer(self._timeout, self._overdue, args=(process, record))
        timer.daemon = True
        timer.start()
        try:
            assert process.stdout is not None  # noqa: S101 (stdout=PIPE above)
            for raw in process.stdout:
                line = raw.decode("utf-8", errors="replace").rstrip()
                if line:
                    session_log.info("[retraining %s] %s", record.alertname, line)
            returned = process.wait()
            # killed by a signal: the shell's 128 + its number, like the session's own codes
            code = returned if returned >= 0 else 128 - returned
        finally:
            timer.cancel()
        with self._lock:
            record.exit_code = code
            record.ended_at = time.time()
            self._process = None
            self._metrics.running.set(0)
            self._metrics.sessions.labels(alertname=record.alertname, result=record.result).inc()
        level = logging.INFO if code == 0 else logging.ERROR
        log.log(
            level,
            "alert %s: retraining session (pid %d) %s with exit code %d after %.0f s",
            record.alertname,
            record.pid,
            record.result,
            code,
            record.ended_at - record.started_at,
        )

    def _overdue(self, process: subprocess.Popen[bytes], record: SessionRecord) -> None:
        if process.poll() is None:
            log.error(
                "alert %s: retraining session (pid %d) runs longer than %.0f s: stopping it",
                record.alertname,
                record.pid,
                self._timeout,
            )
            with contextlib.suppress(ProcessLookupError):
                process.terminate()

    def status(self) -> dict[str, Any]:
        """Whether a session runs, the cooldown left, and the last session."""
        with self._lock:
            left = 0.0
            if self._last_start_monotonic is not None:
                left = max(0.0, self._last_start_monotonic + self._cooldown - time.monotonic())
            return {
                "running": self._process is not None,
                "cooldown_seconds": self._cooldown,
                "cooldown_remaining_seconds": math.ceil(left),
                "last_session": None if self._last is None else self._last.as_dict(),
            }

    def stop(self, timeout: float) -> None:
        """Stops a running session: SIGTERM, then SIGKILL after ``timeout`` seconds."""
        with self._lock:
            process, record, watcher = self._process, self._last, self._watcher
        if process is None or record is None:
            return
        log.info(
            "stopping: retraining session (pid %d, alert %s) gets SIGTERM",
            process.pid,
            record.alertname,
        )
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.error(
                "retraining session (pid %d) still runs after %.0f s: killed", process.pid, timeout
            )
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait()
        if watcher is not None:
            watcher.join(5)


# --- the app


def _problem(
    status: int, title: str, detail: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """An RFC 9457 problem document, like every error answer of the stack."""
    return JSONResponse(
        {"type": "about:blank", "title": title, "status": status, "detail": detail},
        status_code=status,
        headers=headers,
        media_type=PROBLEM_MEDIA_TYPE,
    )


class UnauthorizedError(Exception):
    """The request has no bearer token, or another one."""


def create_app(
    settings: WebhookSettings, command: Callable[[str], Sequence[str]] = session_command
) -> FastAPI:
    """Builds the receiver, with metrics in a registry of its own.

    Args:
        settings: The receiver's settings.
        command: A session's command line, given the alert's name (default: the training
            job, :func:`session_command`); it runs with the receiver's environment.
    """
    metrics = RetrainingMetrics()
    sessions = Retrainer(
        metrics, settings.cooldown_seconds, settings.session_timeout_seconds, command
    )
    expected = settings.token.get_secret_value().encode()

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await asyncio.to_thread(sessions.stop, settings.stop_seconds)

    app = FastAPI(
        title="Wine retraining webhook",
        description="Starts a training session on labelled production rows when Alertmanager "
        "reports that the served model drifts or its live accuracy fell.",
        lifespan=lifespan,
    )

    @app.exception_handler(UnauthorizedError)
    async def _unauthorized(_request: Request, _exc: UnauthorizedError) -> JSONResponse:
        return _problem(
            401,
            "Unauthorized",
            "a valid bearer token is required (Authorization: Bearer <token>)",
            {"WWW-Authenticate": 'Bearer realm="retraining"'},
        )

    def authorized(request: Request) -> None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        # the scheme's case does not matter (RFC 9110); the token is compared in constant time
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
            raise UnauthorizedError

    @app.post(
        "/alerts",
        dependencies=[Depends(authorized)],
        status_code=202,
        summary="Alertmanager's webhook: a firing retraining alert starts a session",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": AlertmanagerPayload.model_json_schema()}
                },
            }
        },
        responses={
            200: {"description": "No firing retraining alert in the payload: ignored"},
            401: {"description": "No bearer token, or a wrong one"},
            409: {"description": "A session is running"},
            413: {"description": "The payload is too large"},
            422: {"description": "Not an Alertmanager payload of version 4"},
            429: {"description": "Too soon after the last session started (see Retry-After)"},
        },
    )
    async def alerts(request: Request) -> Any:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                return _problem(
                    413, "Content Too Large", f"the payload exceeds {MAX_BODY_BYTES} bytes"
                )
        try:
            payload = AlertmanagerPayload.model_validate_json(bytes(body))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()[:5]
            )
            return _problem(
                422,
                "Unprocessable Content",
                f"not an Alertmanager webhook payload of version 4: {problems}",
            )
        alertname = payload.retraining_alert()
        if alertname is None:
            names = sorted({a.labels.get("alertname", "?") for a in payload.alerts})
            log.info(
                "ignored a %s notification (alerts: %s): no firing %s",
                payload.status,
                ", ".join(names) or "none",
                " or ".join(RETRAINING_ALERTS),
            )
            return JSONResponse(
                {
                    "status": "ignored",
                    "detail": f"no firing alert named {' or '.join(RETRAINING_ALERTS)}",
                },
                status_code=200,
            )
        try:
            outcome = sessions.start(alertname)
        except OSError as exc:
            log.error("alert %s: the retraining session could not start: %s", alertname, exc)
            return _problem(500, "Internal Server Error", "the retraining session could not start")
        if outcome.result == "busy":
            since = outcome.session.as_dict()["started_at"] if outcome.session else "?"
            log.info("alert %s: a retraining session is running (since %s)", alertname, since)
            return _problem(
                409,
                "Conflict",
                f"a retraining session is running (started {since}); this alert starts none",
            )
        if outcome.result == "cooldown":
            retry = max(1, math.ceil(outcome.retry_after_seconds))
            log.info("alert %s: cooldown, next session possible in %d s", alertname, retry)
            return _problem(
                429,
                "Too Many Requests",
                f"the last retraining session started less than {settings.cooldown_seconds:g} s "
                f"ago; the next may start in {retry} s",
                {"Retry-After": str(retry)},
            )
        assert outcome.session is not None  # noqa: S101 (started)
        return JSONResponse(
            {"status": "started", "session": outcome.session.as_dict()}, status_code=202
        )

    @app.get("/healthz", summary="Liveness: 200 while the receiver serves")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/status", summary="The running or last retraining session and the cooldown")
    def status() -> dict[str, Any]:
        return sessions.status()

    @app.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    def prometheus_metrics() -> PlainTextResponse:
        return PlainTextResponse(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return app


def main() -> int:
    """Serves the receiver until SIGTERM/SIGINT; returns the exit code (2: invalid settings)."""
    settings = load_settings(WebhookSettings)
    if settings is None:
        return 2
    configure_logging(settings.log_level)
    from model_training.settings import TrainingSettings

    # the sessions read the same environment: refuse to serve when none of them could train
    training = load_settings(TrainingSettings)
    if training is None:
        return 2
    if not training.monitoring_db_url:
        log.error(
            "invalid setting WINE_MONITORING_DB_URL: retraining sessions train with the "
            "prediction log's labelled rows; set it (and WINE_MONITORING_DB_PASSWORD_FILE)"
        )
        return 2
    import uvicorn

    def stopped(signum: int, _frame: FrameType | None) -> None:
        log.info("stopped by %s", signal.Signals(signum).name)

    # uvicorn handles SIGTERM and SIGINT while it serves (the lifespan stops a running
    # session), then raises the signal again with the handler found before it: this one,
    # so that the receiver exits 0 instead of dying of the signal.
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, stopped)

    log.info(
        "retraining webhook on http://%s:%d/alerts (alerts %s, cooldown %g s)",
        settings.host,
        settings.port,
        ", ".join(RETRAINING_ALERTS),
        settings.cooldown_seconds,
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,  # the root logger's format (wine_mlops.logs)
        access_log=False,  # each alert is logged once, with what became of it
        timeout_graceful_shutdown=5,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
