"""MLflow exporter: /metrics latency and MLflow requests with 1,000 runs, against a baseline.

Starts a real MLflow server (SQLite) holding 1,000 finished runs, runs the exporter as a real
process (``python -m mlflow_exporter``), and measures:

- the latency of ``GET /metrics`` (keep-alive, as Prometheus scrapes), p50 and p99;
- the MLflow REST requests of one refresh, counted by the MLflow server itself (its
  Prometheus ``mlflow_http_request_total``) and by the exporter
  (``mlflow_exporter_refresh_requests``);
- the same for a naive exporter built like the thesis's: on every scrape it searches the
  runs and then calls ``get_run`` once per run (N+1 requests).

Exits 1 when the scrape p50 misses the 10 ms target. Usage: python bench/bench_exporter.py
"""

from __future__ import annotations

import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # bench/run.py sets PYTHONPATH too; this lets it run alone

from mlflow.tracking import MlflowClient  # noqa: E402

from bench.keepalive_latency import measure, percentile  # noqa: E402
from tests.mlflow_exporter.support import (  # noqa: E402
    ExporterProcess,
    get,
    insert_finished_runs,
    samples,
    value,
)
from tests.support.processes import (  # noqa: E402
    auth_env,
    free_port,
    start_mlflow_server,
    stop,
)
from wine_mlops.logs import configure_logging  # noqa: E402

log = logging.getLogger("bench_exporter")

RUNS = 1000
EXPERIMENT = "wine-classifier"
SCRAPES = 300
NAIVE_SCRAPES = 2
P50_TARGET_MS = 10.0


def requests_served(ops_url: str) -> float:
    """HTTP requests the MLflow server answered so far (its metrics, on the ops port)."""
    _, text = get(f"{ops_url}/metrics")
    return sum(v for (name, _), v in samples(text).items() if name == "mlflow_http_request_total")


def naive_scrape(client: MlflowClient, experiment: str) -> int:
    """The thesis's exporter: search the runs, then one ``get_run`` per run, per scrape.

    Returns:
        The number of exposition lines it produced.
    """
    found = client.get_experiment_by_name(experiment)
    assert found is not None
    lines = []
    token = None
    while True:
        page = client.search_runs([found.experiment_id], max_results=1000, page_token=token)
        for run in page:
            full = client.get_run(run.info.run_id)
            for key, metric in full.data.metrics.items():
                lines.append(f'{key}{{run_name="{full.info.run_name}"}} {metric}')
        token = page.token
        if not token:
            return len(lines)


def main() -> int:
    """Runs the benchmark; returns the exit code."""
    configure_logging("WARNING")
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    workdir = Path(tempfile.mkdtemp(prefix="bench-exporter-"))
    store = {"MLFLOW_BACKEND_STORE_URI": f"sqlite:///{workdir / 'mlflow.db'}"}
    server = start_mlflow_server(workdir, store)
    os.environ.update(auth_env("admin"))  # this process's MLflow client, and the exporter's
    exporter = None
    try:
        client = MlflowClient(server.url)
        experiment = client.get_experiment_by_name(EXPERIMENT)  # the launcher creates it
        assert experiment is not None
        experiment_id = experiment.experiment_id
        insert_finished_runs(store["MLFLOW_BACKEND_STORE_URI"], experiment_id, RUNS)

        # The exporter: one refresh (a long interval keeps it to one), then many scrapes.
        before = requests_served(server.ops_url)
        own = requests_served(server.ops_url) - before  # whether reading the count counts itself
        before = requests_served(server.ops_url)
        exporter = ExporterProcess(
            server.url,
            free_port(),
            workdir / "exporter.log",
            EXPORTER_REFRESH_INTERVAL="3600",
            EXPORTER_EXPERIMENTS=EXPERIMENT,
        )
        text = exporter.wait_for("mlflow_up", 1, timeout=120)
        refresh_server_count = requests_served(server.ops_url) - before - own
        refresh_own_count = value(text, "mlflow_exporter_refresh_requests")
        refresh_seconds = value(text, "mlflow_exporter_refresh_duration_seconds") or 0.0
        runs_read = value(text, "mlflow_exporter_runs_read")
        measure(f"{exporter.url}/metrics", 20)  # warm-up; timings below in milliseconds
        before = requests_served(server.ops_url)
        timings = measure(f"{exporter.url}/metrics", SCRAPES)
        scrape_server_count = requests_served(server.ops_url) - before - own

        # The naive baseline, in-process (no HTTP layer of its own: flattering to it).
        naive_timings = []
        before = requests_served(server.ops_url)
        for _ in range(NAIVE_SCRAPES):
            started = time.perf_counter()
            naive_scrape(client, EXPERIMENT)
            naive_timings.append(time.perf_counter() - started)
        naive_requests = (requests_served(server.ops_url) - before - own) / NAIVE_SCRAPES
    finally:
        if exporter is not None:
            exporter.stop()
        stop(server.process)

    p50, p99 = percentile(timings, 50), percentile(timings, 99)  # milliseconds
    naive_p50 = statistics.median(naive_timings) * 1000
    rows = [
        ("", "scrape p50", "scrape p99", "MLflow requests"),
        (
            "mlflow-exporter (snapshot)",
            f"{p50:.2f} ms",
            f"{p99:.2f} ms",
            f"{refresh_server_count:.0f} per refresh (exporter says {refresh_own_count:.0f}), "
            f"{scrape_server_count:.0f} during {SCRAPES} scrapes",
        ),
        (
            "naive N+1 (thesis design)",
            f"{naive_p50:.0f} ms",
            f"{max(naive_timings) * 1000:.0f} ms",
            f"{naive_requests:.0f} per scrape",
        ),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    out = [
        f"MLflow exporter, {RUNS} runs in one experiment (MLflow on SQLite, "
        f"{runs_read:.0f} runs read per refresh, refresh took {refresh_seconds:.2f} s):"
    ]
    out += [
        "  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows
    ]
    out.append(f"  speed-up of the scrape p50: {naive_p50 / p50:,.0f}x")
    ok = p50 < P50_TARGET_MS and scrape_server_count == 0
    out.append(
        f"  target p50 < {P50_TARGET_MS:.0f} ms and no MLflow request during scrapes: "
        + ("met" if ok else "MISSED")
    )
    sys.stdout.write("\n".join(out) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
