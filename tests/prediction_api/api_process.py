"""Runs the prediction API as a real process (``python -m prediction_api``), for tests and bench."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import auth_env, free_port, stop
from wine_mlops.healthcheck import wait_until_healthy


@dataclass
class ApiProcess:
    """A running prediction API."""

    url: str
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        """What the API logged so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """Stops it (SIGTERM, then SIGKILL)."""
        stop(self.process)


def start_api(tracking_uri: str, workdir: Path, wait_ready: bool = True, **env: str) -> ApiProcess:
    """Starts ``python -m prediction_api`` on a free port of 127.0.0.1.

    Args:
        tracking_uri: The MLflow server it serves models from.
        workdir: Where its log goes.
        wait_ready: Wait until ``/readyz`` answers 200 (a model is loaded), else ``/healthz``.
        **env: Extra environment variables (e.g. ``WINE_MODEL_NAME``).
    """
    port = free_port()
    log_path = workdir / f"prediction-api-{port}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "prediction_api"],
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "WINE_"))},
            "MLFLOW_TRACKING_URI": tracking_uri,
            "MLFLOW_DISABLE_TELEMETRY": "true",
            # Tests serve models of their own names, granted to the admin only; the e2e tests
            # serve the stack's model as the read-only prediction-api user.
            **auth_env("admin"),
            "API_HOST": "127.0.0.1",
            "API_PORT": str(port),
            **env,
        },
        stdout=open(log_path, "wb"),  # noqa: SIM115 (the child keeps it)
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    api = ApiProcess(f"http://127.0.0.1:{port}", process, log_path)
    try:
        wait_until_healthy(f"{api.url}/{'readyz' if wait_ready else 'healthz'}", 120, process)
    except Exception:
        api.stop()
        raise RuntimeError(f"prediction API did not become ready:\n{api.log()}") from None
    return api
