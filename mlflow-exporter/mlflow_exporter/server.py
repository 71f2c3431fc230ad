"""Serves the exporter with gunicorn: one worker process (one refresher), a few threads."""

from __future__ import annotations

import logging
import sys
from typing import Any

from mlflow_exporter.settings import ExporterSettings
from wine_mlops.gunicorn import CodeConfiguredServer
from wine_mlops.logs import configure_logging
from wine_mlops.settings import load_settings, use_mlflow_http

log = logging.getLogger("mlflow_exporter")


class ExporterServer(CodeConfiguredServer):
    """gunicorn configured in code; the app is built in the worker, after the fork.

    One worker keeps one refresher (and one snapshot); the ``gthread`` worker's threads
    answer concurrent scrapes and health checks.

    Args:
        settings: The exporter settings.
    """

    def __init__(self, settings: ExporterSettings) -> None:
        self._settings = settings
        super().__init__(self.gunicorn_options(), self.build_app)

    def gunicorn_options(self) -> dict[str, Any]:
        """The gunicorn settings derived from the exporter settings."""
        return {
            "bind": f"{self._settings.host}:{self._settings.port}",
            "workers": 1,
            "worker_class": "gthread",
            "threads": self._settings.threads,
            "timeout": 30,
            "graceful_timeout": 10,
            "keepalive": 5,
            "loglevel": self._settings.log_level.lower(),
            "proc_name": "mlflow-exporter",
        }

    def build_app(self) -> Any:
        """Builds the application (and starts its refresher) in the worker process."""
        from mlflow_exporter.app import create_app

        # The refresher thread parses MLflow's answers while scrapes are served: hand the
        # GIL over every millisecond (not every 5) so a scrape never waits long behind it.
        sys.setswitchinterval(0.001)

        log.info(
            "exporting %s (experiments: %s) every %.0f s on %s:%d",
            self._settings.tracking_uri,
            ", ".join(self._settings.experiments) or "all",
            self._settings.refresh_interval_seconds,
            self._settings.host,
            self._settings.port,
        )
        return create_app(self._settings)


def main() -> int:
    """Reads the settings and serves the exporter until gunicorn is stopped.

    Returns:
        The exit code: 2 for invalid settings, otherwise gunicorn exits the process.
    """
    settings = load_settings(ExporterSettings)
    if settings is None:
        return 2
    configure_logging(settings.log_level)
    settings.use_credentials()
    # An exporter must not block its refresher for minutes: the next refresh is the retry.
    use_mlflow_http(max_retries=0, timeout_seconds=settings.mlflow_timeout_seconds)
    ExporterServer(settings).run()
    return 0
