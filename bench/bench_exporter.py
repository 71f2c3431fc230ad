"""MLflow exporter at scale: 10,000 and 50,000 runs in a throw-away MLflow on PostgreSQL.

Starts a PostgreSQL cluster and an MLflow server (basic-auth) as local processes
(:mod:`devstack`, as the tests do; never the compose stack), seeds runs shaped like
the training job's straight into MLflow's tables (``bench/seed_runs.py``), registers a model
with ``champion`` and ``challenger`` aliases, and for each size runs the exporter as a real
process (``python -m mlflow_exporter``) refreshing back to back (the worst case: a refresh
always running) while it measures:

- the refresh: seconds (``wine_exporter_last_refresh_duration_seconds``, the slowest seen),
  runs read, MLflow requests, whether the run cap was reached;
- the exporter's peak memory (the gunicorn worker's ``VmHWM``);
- ``GET /metrics`` latency on a keep-alive connection, p50 and p99;
- the latency of other MLflow requests (``runs/get`` of one run, the champion alias, as
  the prediction API asks it) with the exporter stopped and while it refreshes;
- that the exported metrics of every model family equal its newest finished seeded run.

At 10,000 runs it also times one refresh of the previous design, which read every run of
the experiment (``EXPORTER_RUNS_PER_EXPERIMENT`` unbounded). The older naive N+1 baseline
(one ``get_run`` per run per scrape) is no longer run: at 50,000 runs it would take hours.

Targets (exit 1 when one is missed): refresh <= 5 s and peak memory <= 250 MiB at 50,000
runs, scrape p99 <= 10 ms, other MLflow requests' p50 at most 2x slower during a refresh.

Usage: python bench/bench_exporter.py
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from keepalive_latency import measure, percentile
from mlflow.tracking import MlflowClient
from seed_runs import Seeded, seed_runs

from devstack import PASSWORDS, auth_env, postgres_server, start_exporter, start_mlflow_server
from devstack import metric_value as value
from mlflow_exporter.units import unit_name
from wine_mlops.logs import configure_logging
from wine_mlops.waiting import wait_until

log = logging.getLogger("bench_exporter")

SIZES = (10_000, 50_000)
EXPERIMENT = "wine-classifier"
MODEL = "wine-classifier"
SCRAPES = 300
OTHER_REQUESTS = 60
DURING_SECONDS = 8.0
REFRESH_TARGET_S = 5.0
MEMORY_TARGET_MIB = 250.0
SCRAPE_P99_TARGET_MS = 10.0
SLOWDOWN_TARGET = 2.0


@dataclass
class Figures:
    """What one size measured."""

    runs: int
    refresh_s: float
    runs_read: float
    requests: float
    cap_reached: bool
    peak_mib: float
    scrape_p50: float
    scrape_p99: float
    idle_p50: float
    during_p50: float
    during_p95: float
    exact: bool


def worker_pids(master: int) -> list[int]:
    """The gunicorn workers of an exporter (the children of its master process)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master:
            found.append(int(stat.parent.name))
    return found


def peak_mib(pid: int) -> float:
    """Peak resident memory (``VmHWM``) of a process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def other_requests(url: str, run_id: str, rounds: int) -> list[float]:
    """Times ``runs/get`` of one run and the champion alias lookup, in milliseconds."""
    login = ("admin", PASSWORDS["admin"])
    timings = []
    for _ in range(rounds):
        timings += measure(f"{url}/api/2.0/mlflow/runs/get?run_id={run_id}", 1, login)
        timings += measure(
            f"{url}/api/2.0/mlflow/registered-models/alias?name={quote(MODEL)}&alias=champion",
            1,
            login,
        )
    return timings


def measure_size(server_url: str, workdir: Path, size: int, seeded: Seeded) -> Figures:
    """Runs the exporter against ``size`` runs and measures it."""
    newest_run = seeded.newest_finished["RandomForestClassifier"][0]
    other_requests(server_url, newest_run, 10)  # warm-up
    idle = other_requests(server_url, newest_run, OTHER_REQUESTS)
    exporter = start_exporter(
        server_url,
        workdir,
        log_path=workdir / f"exporter-{size}.log",
        EXPORTER_REFRESH_INTERVAL="0.1",  # back to back: a refresh is always running
        EXPORTER_MIN_PAUSE="0",
        EXPORTER_EXPERIMENTS=EXPERIMENT,
    )
    try:
        exporter.wait_for("mlflow_up", 1, timeout=120)
        during: list[float] = []
        deadline = time.monotonic() + DURING_SECONDS
        while time.monotonic() < deadline:
            during += other_requests(server_url, newest_run, 1)
        measure(f"{exporter.url}/metrics", 20)  # warm-up
        scrapes = measure(f"{exporter.url}/metrics", SCRAPES)
        # the slowest refresh of a few, read from the exporter itself
        durations: dict[float | None, float] = {}  # by refresh count
        scraped = [""]

        def four_refreshes_seen() -> bool:
            scraped[0] = exporter.metrics()
            total = value(scraped[0], "wine_exporter_refreshes_total")
            duration = value(scraped[0], "wine_exporter_last_refresh_duration_seconds")
            durations.setdefault(total, duration or 0)
            return len(durations) >= 4

        with contextlib.suppress(TimeoutError):
            wait_until(four_refreshes_seen, "four refreshes", timeout=30, interval=0.05)
        slowest, text = max(durations.values()), scraped[0]
        exact = all(
            value(
                text,
                f"mlflow_run_{unit_name(metric)}",
                experiment=EXPERIMENT,
                run_name=name,
            )
            == number
            for name, (_, _, metrics) in seeded.newest_finished.items()
            for metric, number in metrics.items()
        )
        workers = worker_pids(exporter.process.pid)
        peak = max((peak_mib(pid) for pid in workers), default=float("nan"))
    finally:
        exporter.stop()
    return Figures(
        runs=size,
        refresh_s=slowest,
        runs_read=value(text, "wine_exporter_last_refresh_runs") or 0,
        requests=value(text, "wine_exporter_last_refresh_requests") or 0,
        cap_reached=value(text, "wine_exporter_run_cap_reached") == 1,
        peak_mib=peak,
        scrape_p50=percentile(scrapes, 50),
        scrape_p99=percentile(scrapes, 99),
        idle_p50=percentile(idle, 50),
        during_p50=percentile(during, 50),
        during_p95=percentile(during, 95),
        exact=exact,
    )


def previous_design_refresh(server_url: str) -> tuple[float, int]:
    """One refresh that reads every run of the experiment, as the exporter used to."""
    from mlflow_exporter.settings import ExporterSettings
    from mlflow_exporter.source import MlflowSource

    settings = ExporterSettings.model_validate(
        {
            "MLFLOW_TRACKING_URI": server_url,
            "EXPORTER_EXPERIMENTS": EXPERIMENT,
            "EXPORTER_PAGE_SIZE": 1000,
            "EXPORTER_RUNS_PER_EXPERIMENT": 10**9,
            "EXPORTER_MAX_RUNS_PER_REFRESH": 10**9,
        }
    )
    started = time.perf_counter()
    snapshot = MlflowSource(settings).read()
    return time.perf_counter() - started, snapshot.runs_read


def register_model(client: MlflowClient, seeded: Seeded) -> None:
    """A registered model whose champion and challenger are recent seeded runs."""
    if not client.search_registered_models(f"name = '{MODEL}'"):  # the launcher may create it
        client.create_registered_model(MODEL)
    for family in ("RandomForestClassifier", "SVC"):
        run_id = seeded.newest_finished[family][0]
        client.create_model_version(MODEL, f"runs:/{run_id}/model", run_id=run_id)
    client.set_registered_model_alias(MODEL, "champion", "1")
    client.set_registered_model_alias(MODEL, "challenger", "2")


def main() -> int:
    """Runs the benchmark; returns the exit code."""
    configure_logging("WARNING")
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    os.environ.update(auth_env("admin"))  # this process's MLflow client, and the exporter's
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = "300"
    workdir = Path(tempfile.mkdtemp(prefix="bench-exporter-"))
    results: list[Figures] = []
    previous: tuple[float, int] | None = None
    with postgres_server() as pg:
        server = start_mlflow_server(workdir, pg.env)
        try:
            client = MlflowClient(server.url)
            experiment = client.get_experiment_by_name(EXPERIMENT)  # the launcher creates it
            assert experiment is not None
            now_ms = int(time.time() * 1000)
            seeded = Seeded()
            for size in SIZES:
                started = time.monotonic()
                batch = seed_runs(
                    pg.url(),
                    experiment.experiment_id,
                    size - seeded.runs,
                    seeded.oldest_start_ms or now_ms,
                    newest_running=seeded.runs == 0,
                )
                if seeded.runs == 0:
                    seeded = batch
                    register_model(client, seeded)
                else:
                    seeded.runs += batch.runs
                    seeded.oldest_start_ms = batch.oldest_start_ms
                sys.stdout.write(
                    f"seeded {seeded.runs:,} runs in {time.monotonic() - started:.1f} s\n"
                )
                sys.stdout.flush()
                results.append(measure_size(server.url, workdir, size, seeded))
                if previous is None:
                    previous = previous_design_refresh(server.url)
        finally:
            server.stop()

    lines = [
        "",
        "MLflow exporter on MLflow + PostgreSQL (refreshing back to back; other requests: "
        "runs/get and the champion alias):",
    ]
    header = (
        "runs",
        "refresh",
        "read",
        "requests",
        "peak RSS",
        "scrape p50/p99",
        "other p50 idle",
        "during p50 (p95)",
        "metrics",
    )
    rows = [header]
    ok = True
    for f in results:
        slowdown = f.during_p50 / f.idle_p50
        rows.append(
            (
                f"{f.runs:,}",
                f"{f.refresh_s:.2f} s",
                f"{f.runs_read:.0f}{' (cap)' if f.cap_reached else ''}",
                f"{f.requests:.0f}",
                f"{f.peak_mib:.0f} MiB",
                f"{f.scrape_p50:.2f}/{f.scrape_p99:.2f} ms",
                f"{f.idle_p50:.1f} ms",
                f"{f.during_p50:.1f} ms ({f.during_p95:.1f}) = {slowdown:.1f}x",
                "exact" if f.exact else "WRONG",
            )
        )
        ok = ok and f.exact and f.scrape_p99 <= SCRAPE_P99_TARGET_MS
        ok = ok and slowdown <= SLOWDOWN_TARGET
        if f.runs == max(SIZES):
            ok = ok and f.refresh_s <= REFRESH_TARGET_S and f.peak_mib <= MEMORY_TARGET_MIB
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    if previous is not None:
        lines.append(
            f"  previous design (every run read) at {SIZES[0]:,} runs: one refresh took "
            f"{previous[0]:.1f} s for {previous[1]:,} runs"
        )
    lines.append(
        f"  targets: refresh <= {REFRESH_TARGET_S:.0f} s and <= {MEMORY_TARGET_MIB:.0f} MiB at "
        f"{max(SIZES):,} runs, scrape p99 <= {SCRAPE_P99_TARGET_MS:.0f} ms, other requests "
        f"<= {SLOWDOWN_TARGET:.0f}x slower during a refresh, exact metrics: "
        + ("met" if ok else "MISSED")
    )
    sys.stdout.write("\n".join(lines) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
