"""Watches the tracking server's stores: its two databases and the artifact folder.

MLflow's own ``/health`` answers 200 while its database is unreachable: it never touches
the database. The launcher probes the stores itself, in a background thread every few
seconds (never on the request path of a healthcheck or a scrape), and

- reports not ready on ``/readyz`` (the compose healthcheck) while a database does not answer;
- publishes on the ops ``/metrics`` what the alerts need:
  ``wine_mlflow_store_up{store="tracking"|"auth"|"artifacts"}``,
  ``wine_mlflow_artifact_store_free_bytes`` and ``wine_mlflow_artifact_store_size_bytes``.

The artifact folder is checked without writing into it (a probe file would show up in
backups and in a copy taken at that moment): it must exist, be a writable folder on a
read-write file system; its free space is reported for the alert on a full volume. A full
artifact volume does not make the server unready: reading runs and models still works, and
the prediction API keeps loading its champion.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

from prometheus_client import CollectorRegistry, Gauge
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger(__name__)


def local_artifact_folder(destination: str) -> Path | None:
    """The local folder of an artifacts destination, or None for a remote store (s3://...)."""
    parsed = urlparse(destination)
    if parsed.scheme in ("", "file"):
        return Path(parsed.path if parsed.scheme else destination)
    return None


class StoreProbe:
    """Probes the stores every ``interval`` seconds; answers from the last results.

    Args:
        databases: SQLAlchemy URIs by store name (``tracking``, ``auth``).
        artifacts: The local artifact folder, or None when artifacts live elsewhere.
        registry: Where the gauges are registered (the ops server's).
        interval: Seconds between two probes.
        timeout: Seconds a database may take to accept a connection.
    """

    def __init__(
        self,
        databases: dict[str, str],
        artifacts: Path | None,
        registry: CollectorRegistry,
        interval: float = 5.0,
        timeout: int = 3,
    ) -> None:
        self._engines = {
            name: create_engine(
                uri,
                pool_size=1,
                max_overflow=0,
                pool_pre_ping=True,
                connect_args={"connect_timeout": timeout} if uri.startswith("postgresql") else {},
            )
            for name, uri in databases.items()
        }
        self._artifacts = artifacts
        self._interval = interval
        self._stop = threading.Event()
        self._up: dict[str, bool] = {}
        self._gauge_up = Gauge(
            "wine_mlflow_store_up",
            "1 when the store answers (tracking and auth databases) or is a writable folder "
            "(artifacts), else 0",
            ["store"],
            registry=registry,
        )
        self._free = Gauge(
            "wine_mlflow_artifact_store_free_bytes",
            "Free bytes of the artifact volume (for its non-root owner)",
            registry=registry,
        )
        self._size = Gauge(
            "wine_mlflow_artifact_store_size_bytes",
            "Size in bytes of the artifact volume",
            registry=registry,
        )
        self._thread = threading.Thread(target=self._loop, name="store-probe", daemon=True)

    def start(self) -> None:
        """Probes once now, then keeps probing in the background."""
        self.probe()
        self._thread.start()

    def stop(self) -> None:
        """Stops probing and closes the connections."""
        self._stop.set()
        for engine in self._engines.values():
            engine.dispose()

    def databases_up(self) -> bool:
        """True when every database answered the last probe."""
        return all(self._up.get(name, False) for name in self._engines)

    def probe(self) -> None:
        """Checks every store once and updates the gauges; a change of state is logged."""
        for name, engine in self._engines.items():
            self._record(name, self._database_answers(engine))
        if self._artifacts is not None:
            self._record("artifacts", self._artifacts_usable(self._artifacts))

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.probe()
            except Exception:  # a probe must never end the thread
                log.exception("probing the stores failed")

    def _record(self, store: str, answer: str | None) -> None:
        up = answer is None
        if self._up.get(store) != up:
            if up:
                log.info("%s store: available", store)
            else:
                log.error("%s store: unavailable: %s", store, answer)
        self._up[store] = up
        self._gauge_up.labels(store=store).set(1 if up else 0)

    @staticmethod
    def _database_answers(engine: Engine) -> str | None:
        """None when ``SELECT 1`` works, else why not (one line, no password)."""
        started = time.monotonic()
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            engine.dispose()  # reconnect from scratch next time
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
            first = reason[0] if reason else type(exc).__name__
            return f"{first} (after {time.monotonic() - started:.1f} s)"
        return None

    def _artifacts_usable(self, folder: Path) -> str | None:
        """None when the folder is a writable folder on a read-write volume, else why not."""
        try:
            stats = os.statvfs(folder)
        except OSError as exc:
            self._free.set(0)
            return f"{folder}: {exc.strerror}"
        self._free.set(stats.f_bavail * stats.f_frsize)
        self._size.set(stats.f_blocks * stats.f_frsize)
        if not folder.is_dir():
            return f"{folder}: not a folder"
        if stats.f_flag & os.ST_RDONLY:
            return f"{folder}: read-only file system"
        if not os.access(folder, os.W_OK | os.X_OK):
            return f"{folder}: not writable by uid {os.getuid()}"
        return None
