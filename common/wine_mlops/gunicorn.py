"""gunicorn configured in code, for the services that run under it.

Import this module only in a service that depends on gunicorn (``common`` itself does not):
the prediction API and the exporter do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger


class RootLogger(Logger):
    """gunicorn's logger, but its lines go through the root logger set up by
    :func:`~wine_mlops.logs.configure_logging`, in the stack's one format."""

    def setup(self, cfg: Any) -> None:
        """Lets gunicorn configure itself, then hands its records to the root logger."""
        super().setup(cfg)
        for logger in (self.error_log, self.access_log):
            logger.handlers.clear()
            logger.propagate = True


class CodeConfiguredServer(BaseApplication):
    """gunicorn configured in code (no command line, no config file); the application is
    built by ``load_app`` in each worker, after the fork (no preload).

    Args:
        options: gunicorn settings by name (``bind``, ``workers``, ``worker_class``, hooks
            such as ``child_exit``, ...); ``logger_class`` defaults to :class:`RootLogger`,
            ``accesslog`` to none, ``errorlog`` to standard error, no control socket.
        load_app: Builds the application; called once in every worker process.
    """

    def __init__(self, options: dict[str, Any], load_app: Callable[[], Any]) -> None:
        self._options = {
            "logger_class": RootLogger,
            "accesslog": None,
            "errorlog": "-",
            "preload_app": False,
            # no control socket: it would live in $HOME (read-only in the images) and two
            # servers of one user would share its path
            "control_socket_disable": True,
            **options,
        }
        self._load_app = load_app
        super().__init__()

    def load_config(self) -> None:
        """Copies the options into gunicorn's configuration."""
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        """Builds the application in the worker process."""
        return self._load_app()
