"""Logging set-up shared by the services: one line per event, key facts first."""

from __future__ import annotations

import logging
import sys

_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def configure_logging(level: str = "INFO") -> None:
    """Sends the service's logs to standard error in one readable format.

    Args:
        level: The lowest level shown, e.g. ``"INFO"`` or ``"DEBUG"``.
    """
    logging.basicConfig(level=level.upper(), format=_FORMAT, stream=sys.stderr, force=True)
    # MLflow and its HTTP stack are chatty at INFO; keep their warnings only.
    for noisy in ("urllib3", "alembic", "mlflow.utils.requirements_utils"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
