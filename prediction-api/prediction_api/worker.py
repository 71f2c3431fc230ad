"""The API's gunicorn worker: uvicorn's, with a bounded graceful shutdown and its log lines
in the stack's format."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from uvicorn_worker import UvicornWorker

#: Seconds requests in flight get after SIGTERM (the app's lifespan then stops its watcher),
#: within the master's ``graceful_timeout``.
GRACEFUL_REQUESTS_SECONDS = 7


class ApiWorker(UvicornWorker):
    """A uvicorn worker whose requests in flight get a bounded time after SIGTERM and
    whose ``uvicorn.error`` records reach the root logger (as gunicorn's own do); no
    access log."""

    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {
        **UvicornWorker.CONFIG_KWARGS,
        "timeout_graceful_shutdown": GRACEFUL_REQUESTS_SECONDS,
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        errors = logging.getLogger("uvicorn.error")
        errors.handlers = []
        errors.propagate = True
        # No access log: requests are counted in /metrics, and a line per request cost about
        # a tenth of a one-wine request's time under load (measured with py-spy). uvicorn
        # writes the line only when this logger has a handler, here or above it.
        access = logging.getLogger("uvicorn.access")
        access.handlers = []
        access.propagate = False
