"""MLflow server latency on a reused connection: one uvicorn worker versus several.

uvicorn with ``--workers`` > 1 does not set TCP_NODELAY, so each request on a keep-alive
connection can wait ~40 ms (Nagle + delayed ACK). The stack runs one worker; the baseline
measured in the same run is two workers. Fails if the chosen setting is not faster.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from keepalive_latency import measure, percentile

from devstack import PASSWORDS, start_mlflow_server

REQUESTS = 200


def run(workers: int) -> dict[str, float]:
    """Starts a server with ``workers`` workers and measures two endpoints."""
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        server = start_mlflow_server(
            workdir,
            {
                "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{workdir / 'db.sqlite'}",
                "MLFLOW_WORKERS": str(workers),
            },
        )
        try:
            # As the stack runs it: basic-auth on, the request of a read-only service user.
            login = ("prediction-api", PASSWORDS["prediction-api"])
            api = measure(
                f"{server.url}/api/2.0/mlflow/experiments/get-by-name"
                "?experiment_name=wine-classifier",
                REQUESTS,
                login,
            )
            health = measure(f"{server.url}/health", REQUESTS)
        finally:
            server.stop()
    return {
        "api_p50": percentile(api, 50),
        "api_p99": percentile(api, 99),
        "health_p50": percentile(health, 50),
        "health_p99": percentile(health, 99),
    }


def main() -> int:
    chosen, baseline = run(1), run(2)
    sys.stdout.write(
        f"{REQUESTS} keep-alive requests each, milliseconds\n"
        f"{'':28}{'API p50':>10}{'API p99':>10}{'/health p50':>13}{'/health p99':>13}\n"
    )
    for label, figures in (("1 worker (the stack)", chosen), ("2 workers (baseline)", baseline)):
        sys.stdout.write(
            f"{label:28}{figures['api_p50']:10.2f}{figures['api_p99']:10.2f}"
            f"{figures['health_p50']:13.2f}{figures['health_p99']:13.2f}\n"
        )
    ok = chosen["api_p50"] < baseline["api_p50"]
    sys.stdout.write(f"one worker is {'faster' if ok else 'NOT faster'} than the baseline\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
