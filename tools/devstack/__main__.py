"""``make dev``: the stack's Python services as local processes, without Docker.

Starts the MLflow tracking server (with basic-auth, as in the stack) on embedded SQLite files
with a local artifact folder (all under ``.dev/``) and the exporter, waits until they are
healthy, runs one training session, starts the prediction API, prints the URLs, and keeps
the services running until Ctrl-C (or stops once everything answered, with ``--once``).

Usage: python -m devstack [--port 5000] [--api-port 7654] [--exporter-port 8000]
       [--ops-port 5001] [--state-dir .dev] [--once]
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from devstack.services import (
    Logins,
    Service,
    StartupError,
    start_api,
    start_exporter,
    start_mlflow_server,
)
from wine_mlops.logs import configure_logging

log = logging.getLogger("dev")


def main(argv: list[str] | None = None) -> int:
    """Runs the dev stack; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m devstack", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--port", type=int, default=int(os.environ.get("MLFLOW_PORT", "5000")))
    parser.add_argument("--api-port", type=int, default=int(os.environ.get("API_PORT", "7654")))
    parser.add_argument(
        "--exporter-port", type=int, default=int(os.environ.get("EXPORTER_PORT", "8000"))
    )
    parser.add_argument(
        "--ops-port", type=int, default=int(os.environ.get("MLFLOW_OPS_PORT", "5001"))
    )
    parser.add_argument("--state-dir", type=Path, default=Path(".dev"))
    parser.add_argument("--once", action="store_true", help="stop after the training session")
    args = parser.parse_args(argv)
    configure_logging()

    state = args.state_dir.resolve()
    logs = state / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    # Made once per state folder and kept there: the admin password is stored in the auth
    # database on first start.
    logins = Logins.stored(state / "logins.json")
    services: dict[str, Service] = {}

    def as_user(user: str) -> dict[str, Any]:
        """What each client service gets: its MLflow login, its log in the state folder and
        the caller's environment (WINE_* settings reach it)."""
        return {
            "login": logins.auth_env(user),
            "log_path": logs / f"{user}.log",
            "base_env": os.environ,
        }

    try:
        server = start_mlflow_server(
            state,
            {
                "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{state / 'mlflow.db'}",
                "MLFLOW_PROMETHEUS_DIR": str(state / "mlflow-prometheus"),
            },
            args.port,
            args.ops_port,
            logins=logins,
            log_path=logs / "mlflow-server.log",
            base_env=os.environ,
        )
        services[server.name] = server
        exporter = start_exporter(
            server.url,
            state,
            port=args.exporter_port,
            EXPORTER_REFRESH_INTERVAL="5",
            **as_user("mlflow-exporter"),
        )
        services[exporter.name] = exporter
        log.info("mlflow-server and mlflow-exporter are healthy; training")
        training = subprocess.run(
            [sys.executable, "-m", "model_training"],
            env={
                **os.environ,
                "MLFLOW_TRACKING_URI": server.url,
                "MLFLOW_DISABLE_TELEMETRY": "true",
                **logins.auth_env("trainer"),
            },
            check=False,
        )
        if training.returncode != 0:
            log.error("training failed with exit code %d", training.returncode)
            return training.returncode
        # The prediction log (feedback, live accuracy, drift) on an SQLite file, unless the
        # caller names another database.
        prediction_log = os.environ.get("WINE_MONITORING_DB_URL") or (
            f"sqlite:///{state / 'monitoring.db'}"
        )
        api = start_api(
            server.url,
            state,
            port=args.api_port,
            WINE_MONITORING_DB_URL=prediction_log,
            **as_user("prediction-api"),
        )
        services[api.name] = api
        log.info(
            "ready:\n  MLflow UI        %s  (user admin, password in %s)\n  prediction form  %s/"
            "\n  API docs         %s/docs\n  exporter         %s/metrics\n  prediction log   %s"
            "\n  state            %s",
            server.url,
            state / "logins.json",
            api.url,
            api.url,
            exporter.url,
            prediction_log,
            state,
        )
        if args.once:
            return 0
        log.info("press Ctrl-C to stop")
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        signal.pause()
        return 0
    except KeyboardInterrupt:
        return 0
    except StartupError as exc:  # a service did not come up; the error ends with its log
        log.error("%s", exc)
        return 1
    finally:
        for name, service in services.items():
            log.info("stopping %s", name)
            service.stop(timeout=20)


if __name__ == "__main__":
    sys.exit(main())
