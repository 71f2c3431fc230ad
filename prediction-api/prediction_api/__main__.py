"""``python -m prediction_api``: serves the API with gunicorn and ``WINE_API_WORKERS``
uvicorn workers (default 1).

gunicorn, not uvicorn's own ``--workers``: uvicorn's multi-process mode does not set
TCP_NODELAY, which adds about 40 ms to each request on a reused connection (design.md,
section 4); gunicorn's sockets have it. Inference is CPU-bound (onnxruntime, one thread a
session), so one worker per core uses the machine.

No preload: each worker builds its own app after the fork, so each loads the model and runs
its own watcher (the app's lifespan starts it) and swaps to a new champion by itself. The
metrics of all workers meet in prometheus_client's multiprocess mode: the master creates an
empty directory under the temporary directory (``/tmp``, a tmpfs in the containers) before
it forks, names it in ``PROMETHEUS_MULTIPROC_DIR``, drops a dead worker's live gauges
(``child_exit``) and removes the directory when it exits. SIGTERM stops the workers
gracefully: requests in flight get 7 s, the whole within gunicorn's 9 s (inside compose's
10 s); no access log (requests are counted in ``/metrics``, errors logged).
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
import sys
import tempfile
from typing import Any

from prediction_api.settings import ApiSettings
from wine_mlops.logs import configure_logging
from wine_mlops.settings import load_settings, use_mlflow_http

log = logging.getLogger("prediction_api")

#: Idle keep-alive connections are kept this long: longer than the idle timeout of the
#: usual reverse proxies and load balancers (60 s), so that they, not the API, close them.
KEEPALIVE_SECONDS = 65
#: Seconds the master waits for its workers after SIGTERM before it kills them.
GRACEFUL_WORKERS_SECONDS = 9


def gunicorn_options(settings: ApiSettings, metrics_dir: str) -> dict[str, Any]:
    """The gunicorn settings of the API.

    Args:
        settings: The API settings.
        metrics_dir: The multiprocess metrics directory (the master's ``child_exit`` hook
            drops a dead worker's live gauges from it).
    """
    from prometheus_client import multiprocess

    def child_exit(_server: Any, worker: Any) -> None:
        multiprocess.mark_process_dead(worker.pid, metrics_dir)

    def post_worker_init(_worker: Any) -> None:
        # The modules and the app built so far live as long as the worker: frozen, they are
        # out of the collector's way. A full collection walked them all (about 100,000
        # objects, tens of ms: a stall of every request in flight); now it walks only what
        # requests left behind.
        gc.freeze()

    return {
        "bind": f"{settings.host}:{settings.port}",
        "workers": settings.workers,
        "worker_class": "prediction_api.worker.ApiWorker",
        "timeout": 30,
        "graceful_timeout": GRACEFUL_WORKERS_SECONDS,
        "keepalive": KEEPALIVE_SECONDS,
        "loglevel": settings.log_level.lower(),
        "proc_name": "prediction-api",
        "child_exit": child_exit,
        "post_worker_init": post_worker_init,
        "worker_tmp_dir": tempfile.gettempdir(),
    }


def main() -> int:
    """Reads the settings and serves the API until SIGTERM/SIGINT.

    Returns:
        The exit code: 2 for invalid settings, otherwise gunicorn exits the process.
    """
    settings = load_settings(ApiSettings)
    if settings is None:
        return 2
    configure_logging(settings.log_level)
    settings.use_credentials()
    # MLflow's HTTP client retries 7 times with backoff by default: minutes per look-up while
    # the server is down. The watcher retries on its own schedule, so fail fast instead.
    use_mlflow_http(max_retries=1, timeout_seconds=20)

    from prediction_api.metrics import MULTIPROC_ENV
    from wine_mlops.gunicorn import CodeConfiguredServer

    # fresh and empty: the counts of an earlier run must not be added to this one's
    metrics_dir = tempfile.mkdtemp(prefix="prediction-api-metrics-")
    os.environ[MULTIPROC_ENV] = metrics_dir
    master = os.getpid()

    def build_app() -> Any:
        """Builds the app in a worker (its watcher starts with the app's lifespan)."""
        from prediction_api.app import create_app
        from prediction_api.metrics import ApiMetrics

        return create_app(settings, metrics=ApiMetrics(multiprocess_dir=metrics_dir))

    log.info(
        "serving models:/%s@%s from %s on http://%s:%d with %d worker(s)",
        settings.model_name,
        settings.served_alias,
        settings.tracking_uri,
        settings.host,
        settings.port,
        settings.workers,
    )
    try:
        CodeConfiguredServer(gunicorn_options(settings, metrics_dir), build_app).run()
    finally:
        # a worker leaves through here too (gunicorn forks inside run()): only the master
        # removes the directory
        if os.getpid() == master:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
