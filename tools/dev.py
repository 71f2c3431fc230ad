"""``make dev``: the stack's Python services as local processes, without Docker.

Starts the MLflow tracking server (with basic-auth, as in the stack) on embedded SQLite files
with a local artifact folder (all under ``.dev/``) and the exporter, waits until they are
healthy, runs one training session, starts the prediction API, prints the URLs, and keeps
the services running until Ctrl-C (or stops once everything answered, with ``--once``).

Usage: python tools/dev.py [--port 5000] [--api-port 7654] [--exporter-port 8000]
       [--state-dir .dev] [--once]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

from wine_mlops.healthcheck import wait_until_healthy
from wine_mlops.logs import configure_logging
from wine_mlops.processes import stop_process_group

log = logging.getLogger("dev")


def _start(name: str, args: list[str], env: dict[str, str], logs: Path) -> subprocess.Popen[bytes]:
    log.info("starting %s (log: %s)", name, logs / f"{name}.log")
    return subprocess.Popen(
        [sys.executable, *args],
        env=env,
        stdout=open(logs / f"{name}.log", "ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


#: The MLflow logins of the dev stack, made once per state folder and kept there (the admin
#: password is stored in the auth database on first start).
_LOGINS = (
    "MLFLOW_ADMIN_PASSWORD",
    "MLFLOW_TRAINER_PASSWORD",
    "MLFLOW_PREDICTION_API_PASSWORD",
    "MLFLOW_EXPORTER_PASSWORD",
    "MLFLOW_FLASK_SECRET_KEY",
)


def _logins(state: Path) -> dict[str, str]:
    """The dev stack's passwords, from ``state/logins.json`` (created with random values)."""
    path = state / "logins.json"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(json.dumps({name: secrets.token_urlsafe(24) for name in _LOGINS}))
    return dict(json.loads(path.read_text()))


def _as_user(env: dict[str, str], user: str, password_key: str) -> dict[str, str]:
    return {**env, "MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": env[password_key]}


def _tail(path: Path, lines: int = 20) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
    args = parser.parse_args()
    configure_logging()

    state = args.state_dir.resolve()
    (state / "logs").mkdir(parents=True, exist_ok=True)
    tracking_uri = f"http://127.0.0.1:{args.port}"
    logins = _logins(state)
    env = {
        **os.environ,
        **logins,
        "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{state / 'mlflow.db'}",
        "MLFLOW_AUTH_DATABASE_URI": f"sqlite:///{state / 'auth.db'}",
        "MLFLOW_OPS_PORT": str(args.ops_port),
        "MLFLOW_ARTIFACTS_DESTINATION": str(state / "artifacts"),
        "MLFLOW_PROMETHEUS_DIR": str(state / "mlflow-prometheus"),
        "MLFLOW_HOST": "127.0.0.1",
        "MLFLOW_PORT": str(args.port),
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    processes = {
        "mlflow-server": _start("mlflow-server", ["-m", "mlflow_server"], env, state / "logs")
    }
    try:
        wait_until_healthy(
            f"http://127.0.0.1:{args.ops_port}/readyz",
            timeout=120,
            process=processes["mlflow-server"],
        )
        exporter_url = f"http://127.0.0.1:{args.exporter_port}"
        processes["mlflow-exporter"] = _start(
            "mlflow-exporter",
            ["-m", "mlflow_exporter"],
            {
                **_as_user(env, "mlflow-exporter", "MLFLOW_EXPORTER_PASSWORD"),
                "EXPORTER_HOST": "127.0.0.1",
                "EXPORTER_PORT": str(args.exporter_port),
                "EXPORTER_REFRESH_INTERVAL": "5",
            },
            state / "logs",
        )
        wait_until_healthy(
            f"{exporter_url}/healthz", timeout=60, process=processes["mlflow-exporter"]
        )
        log.info("mlflow-server and mlflow-exporter are healthy; training")
        training = subprocess.run(
            [sys.executable, "-m", "model_training"],
            env=_as_user(env, "trainer", "MLFLOW_TRAINER_PASSWORD"),
            check=False,
        )
        if training.returncode != 0:
            log.error("training failed with exit code %d", training.returncode)
            return training.returncode
        api_url = f"http://127.0.0.1:{args.api_port}"
        processes["prediction-api"] = _start(
            "prediction-api",
            ["-m", "prediction_api"],
            {
                **_as_user(env, "prediction-api", "MLFLOW_PREDICTION_API_PASSWORD"),
                "API_HOST": "127.0.0.1",
                "API_PORT": str(args.api_port),
            },
            state / "logs",
        )
        wait_until_healthy(f"{api_url}/readyz", timeout=120, process=processes["prediction-api"])
        log.info(
            "ready:\n  MLflow UI        %s  (user admin, password in %s)\n  prediction form  %s/"
            "\n  API docs         %s/docs\n  exporter         %s/metrics\n  state            %s",
            tracking_uri,
            state / "logins.json",
            api_url,
            api_url,
            exporter_url,
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
    except (RuntimeError, TimeoutError) as exc:  # a service did not come up
        failed = next((n for n, p in processes.items() if p.poll() is not None), None)
        log.error("%s", exc)
        if failed:
            log.error("%s stopped; its log:\n%s", failed, _tail(state / "logs" / f"{failed}.log"))
        return 1
    finally:
        for name, process in processes.items():
            log.info("stopping %s", name)
            stop_process_group(process, timeout=20)


if __name__ == "__main__":
    sys.exit(main())
