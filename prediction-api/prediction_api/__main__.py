"""``python -m prediction_api``: serves the API with uvicorn, in one worker.

One worker on purpose: uvicorn with ``--workers`` > 1 does not set TCP_NODELAY, which adds
about 40 ms to each request on a reused connection (design.md, section 4); scale with more
containers instead.
"""

from __future__ import annotations

import logging
import sys

from prediction_api.settings import ApiSettings
from wine_mlops.logs import configure_logging
from wine_mlops.settings import load_settings, use_mlflow_http

log = logging.getLogger("prediction_api")


def main() -> int:
    """Reads the settings, builds the app and serves it until SIGTERM/SIGINT."""
    settings = load_settings(ApiSettings)
    if settings is None:
        return 2
    configure_logging(settings.log_level)
    settings.use_credentials()
    # MLflow's HTTP client retries 7 times with backoff by default: minutes per look-up while
    # the server is down. The watcher retries on its own schedule, so fail fast instead.
    use_mlflow_http(max_retries=1, timeout_seconds=20)

    import uvicorn

    from prediction_api.app import create_app

    app = create_app(settings)
    log.info(
        "serving models:/%s@%s from %s on http://%s:%d",
        settings.model_name,
        settings.served_alias,
        settings.tracking_uri,
        settings.host,
        settings.port,
    )
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        workers=1,
        log_config=None,  # keep configure_logging's format
        access_log=False,  # requests are counted in /metrics; errors are logged
        timeout_graceful_shutdown=10,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
