"""A real Alertmanager (Debian's ``prometheus-alertmanager``) with the stack's configuration.

The configuration is ``alertmanager/alertmanager.yml`` with only the webhook's address and
token file replaced (the compose names do not resolve here) and, optionally, the grouping
waits shortened; routes, matchers, receivers and webhook settings are the stack's own::

    config = alertmanager_config(workdir, webhook.url, token_file, wait="1s")
    manager = start_alertmanager(binary, config, workdir)

:class:`WebhookRecorder` listens where the retraining webhook would and records what
Alertmanager sends it (method, path, headers, JSON body), answering 202 like the receiver
does when a session starts.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from devstack import Service, free_port, start_service

REPO = Path(__file__).resolve().parents[2]
ALERTMANAGER_CONFIG = REPO / "alertmanager" / "alertmanager.yml"


def alertmanager_config(
    workdir: Path, webhook_url: str, token_file: Path, *, wait: str | None = None
) -> Path:
    """The stack's configuration with a local webhook address and token file.

    Args:
        workdir: Where to write it.
        webhook_url: Replaces ``http://model-training-webhook:8090/alerts``.
        token_file: Replaces ``/run/secrets/retraining-webhook-token``.
        wait: When given, every ``group_wait`` and ``group_interval`` (e.g. ``1s``).
    """
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    for receiver in config["receivers"]:
        for webhook in receiver.get("webhook_configs", []):
            webhook["url"] = webhook_url
            webhook["http_config"]["authorization"]["credentials_file"] = str(token_file)
    if wait:
        for route in (config["route"], *config["route"].get("routes", [])):
            route["group_wait"] = route["group_interval"] = wait
    path = workdir / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def start_alertmanager(
    binary: str, config: Path, workdir: Path, port: int | None = None
) -> Service:
    """Starts Alertmanager alone (no cluster), its state and log under ``workdir``."""
    port = port or free_port()
    (workdir / "alertmanager-data").mkdir(exist_ok=True)
    return start_service(
        "alertmanager",
        [
            binary,
            f"--config.file={config}",
            f"--storage.path={workdir / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # one instance: no gossip port
        ],
        f"http://127.0.0.1:{port}",
        "/-/ready",
        {"PATH": "/usr/bin:/bin"},
        workdir / "alertmanager.log",
    )


@dataclass(frozen=True)
class Received:
    """One request the webhook got."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def alertnames(self) -> list[str]:
        """The ``alertname`` of every alert in the notification."""
        return [alert["labels"]["alertname"] for alert in self.body.get("alerts", [])]


class WebhookRecorder:
    """An HTTP server on 127.0.0.1 that records every request and answers 202."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                headers = {key.lower(): value for key, value in self.headers.items()}
                recorder.received.append(Received("POST", self.path, headers, body))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """Where the webhook listens: ``http://127.0.0.1:<port>/alerts``."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/alerts"

    def __enter__(self) -> WebhookRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
