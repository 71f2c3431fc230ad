"""The launcher's ops endpoints on a port of their own: ``/readyz`` and ``/metrics``.

MLflow's basic-auth answers its own ``/metrics`` to admins only, and Prometheus should not
hold an admin password. MLflow's server writes its request metrics to multi-process files
(``--expose-prometheus DIR``); this server reads the same files with prometheus-client's
``MultiProcessCollector`` and serves them without a login, on a port that compose leaves on
the internal network (never published on the host), next to the launcher's own metrics
(:mod:`mlflow_server.stores`).
"""

from __future__ import annotations

import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector


class Readiness(Protocol):
    """Tells whether the supervised server is ready."""

    def is_ready(self) -> bool:
        """True when the server answers, its users are in place and its databases answer."""


def metrics_registry(metrics_dir: Path | None) -> CollectorRegistry:
    """A registry for ``/metrics``: MLflow's multi-process metrics when it writes them."""
    registry = CollectorRegistry()
    if metrics_dir is not None:
        MultiProcessCollector(registry, path=str(metrics_dir))
    return registry


class OpsServer:
    """Serves ``GET /readyz`` and ``GET /metrics`` in a daemon thread.

    Args:
        host: Address to bind.
        port: Port to bind.
        registry: What ``/metrics`` serves (:func:`metrics_registry`, plus the launcher's).
        readiness: Answers ``/readyz``.
    """

    def __init__(
        self, host: str, port: int, registry: CollectorRegistry, readiness: Readiness
    ) -> None:

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/readyz":
                    ready = readiness.is_ready()
                    status = HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE
                    self._send(status, b"ready\n" if ready else b"not ready\n", "text/plain")
                elif self.path == "/metrics":
                    self._send(HTTPStatus.OK, generate_latest(registry), CONTENT_TYPE_LATEST)
                else:
                    self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")

            def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                """Silent: Prometheus and the healthcheck poll these paths all the time."""

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="ops-server", daemon=True
        )

    def start(self) -> None:
        """Starts serving in the background."""
        self._thread.start()

    def stop(self) -> None:
        """Stops serving."""
        self._server.shutdown()
        self._server.server_close()
