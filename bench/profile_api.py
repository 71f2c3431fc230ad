"""Where a request's time goes: the prediction API as local processes, measured by wrk, profiled.

Starts a real MLflow server (SQLite), trains two champions (LogisticRegression under
``wine-lr``, RandomForestClassifier under ``wine-rf``), then for each champion and each worker
count runs ``python -m prediction_api`` (gunicorn, uvicorn workers) and measures with wrk,
each figure the median of ``--repeat`` runs:

- ``POST /predict`` at ``-t2 -c8``: requests per second, p50, p99;
- ``POST /predict`` at ``-t1 -c1``: one row on one connection, p50;
- ``POST /predict/batch`` of 1,000 rows at ``-t1 -c1``: p50.

The ceiling (``bench/ceiling_app.py`` under gunicorn with as many workers) is measured the same
way at ``-t2 -c8``. With ``--py-spy PATH`` (a py-spy binary, installed outside the project) it
also records one worker for ``--profile-seconds`` under ``/predict`` load and under batch load
and prints the top frames by own and total time, in % of samples.

Usage: python bench/profile_api.py [--seconds 5] [--repeat 3] [--workers 1,2]
    [--models lr,rf] [--py-spy /tmp/pyspy/bin/py-spy]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path

from bench_serving import Load, run_wrk

from devstack import auth_env, free_port, run_training, start_api, start_mlflow_server
from wine_mlops.features import FEATURE_NAMES, load_wine_frame
from wine_mlops.processes import stop_process_group
from wine_mlops.waiting import wait_until

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MODELS = {"lr": "LogisticRegression", "rf": "RandomForestClassifier"}


def bodies() -> tuple[bytes, bytes]:
    """One wine and a batch of 1,000 wines, as JSON."""
    frame = load_wine_frame()[list(FEATURE_NAMES)]
    rows = frame.to_dict("records")
    return json.dumps(rows[0]).encode(), json.dumps(
        [rows[i % len(rows)] for i in range(1000)]
    ).encode()


def say(text: str) -> None:
    """One result on standard output, at once."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def median_load(measure: Callable[[], Load], repeat: int) -> dict[str, float]:
    """The median of each figure over ``repeat`` runs; any failed request stops the bench."""
    loads = [measure() for _ in range(repeat)]
    if any(load.failed for load in loads):
        raise SystemExit(f"failed requests: {[load.failed for load in loads]}")
    return {
        "rate": statistics.median(load.rate for load in loads),
        "p50_ms": statistics.median(load.p50_ms for load in loads),
        "p99_ms": statistics.median(load.p99_ms for load in loads),
    }


def measure_api(url: str, one: bytes, batch: bytes, seconds: int, repeat: int) -> dict[str, object]:
    """The figures of one running API."""
    predict = url + "/predict"
    return {
        "c8": median_load(lambda: run_wrk(predict, one, seconds), repeat),
        "c1": median_load(lambda: run_wrk(predict, one, seconds, 1, 1), repeat),
        "batch": median_load(lambda: run_wrk(url + "/predict/batch", batch, seconds, 1, 1), repeat),
    }


def worker_pids(master: int) -> list[int]:
    """The gunicorn workers of a master."""
    out = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout
    return [int(pid) for pid in out.split()]


def profile(py_spy: str, pid: int, seconds: int, load: Callable[[], object], out: Path) -> str:
    """Records ``pid`` with py-spy while ``load`` runs; the top frames, as text."""
    raw = out.with_suffix(".txt")
    recorder = subprocess.Popen(
        [py_spy, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "250",
         "--format", "raw", "--output", str(raw), "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    runner = threading.Thread(target=load)
    runner.start()
    recorder.wait()
    runner.join()
    return summarise(raw)


#: Leaf frames of a thread with nothing to do: the event loop waiting in epoll, an idle
#: thread-pool thread, the model watcher sleeping.
IDLE = ("EpollSelector.select", "Condition.wait", "Event.wait", "Queue.get")

#: Frames below which every busy sample sits (the event loop's callback, a pool thread).
REQUEST_ROOTS = ("Handle._run", "WorkerThread.run")


def _frame(text: str) -> str:
    function, _, where = text.partition(" (")
    return f"{function} ({where.rsplit('/', 1)[-1]}"


def summarise(raw: Path, top: int = 18) -> str:
    """Top frames of a py-spy raw (collapsed stacks) file by own and by total time.

    Idle samples (a thread waiting) are counted apart; the percentages are of the busy
    samples, and total time counts the frames above the event loop's callback or the
    pool thread (the start-up frames under them are in every sample).
    """
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = idle = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = [_frame(f) for f in stack.split(";")]
        if frames[-1].startswith(IDLE):
            idle += n
            continue
        samples += n
        own[frames[-1]] += n
        roots = [i for i, f in enumerate(frames) if f.startswith(REQUEST_ROOTS)]
        for frame in set(frames[roots[-1] + 1 if roots else 0 :]):
            total[frame] += n
    busy = max(samples, 1)
    lines = [f"{samples} busy samples ({idle} idle left out); own time:"]
    lines += [f"  {100 * n / busy:5.1f}%  {f}" for f, n in own.most_common(top)]
    lines += ["total time:"]
    lines += [f"  {100 * n / busy:5.1f}%  {f}" for f, n in total.most_common(top)]
    return "\n".join(lines)


def ceiling(workers: int, one: bytes, seconds: int, repeat: int) -> dict[str, float]:
    """The ceiling app under gunicorn with ``workers`` workers, at ``-t2 -c8``."""
    port = free_port()
    process = subprocess.Popen(
        [str(BIN / "gunicorn"), "--chdir", "bench", "-w", str(workers), "-k",
         "uvicorn_worker.UvicornWorker", "-b", f"127.0.0.1:{port}", "ceiling_app:app"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/predict"
    try:
        wait_until(lambda: _answers(url, one), "the ceiling app", timeout=60, interval=0.3)
        return median_load(lambda: run_wrk(url, one, seconds), repeat)
    finally:
        stop_process_group(process)


def _answers(url: str, body: bytes) -> bool:
    import urllib.request

    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310 (loopback)
            return bool(response.status == 200)
    except OSError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--models", default="lr,rf")
    parser.add_argument("--py-spy", default=None)
    parser.add_argument("--profile-seconds", type=int, default=15)
    parser.add_argument("--no-ceiling", action="store_true")
    parser.add_argument("--summarise", type=Path, help="only summarise this py-spy raw file")
    args = parser.parse_args()
    if args.summarise:
        say(summarise(args.summarise))
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    one, batch = bodies()
    server = start_mlflow_server(
        workdir, {"MLFLOW_BACKEND_STORE_URI": f"sqlite:///{workdir / 'mlflow.db'}"}
    )
    os.environ.update(auth_env("admin"))  # models of our own names: the admin owns them
    results: dict[str, object] = {}
    try:
        for key in args.models.split(","):
            done = run_training(server.url, candidates=MODELS[key], WINE_MODEL_NAME=f"wine-{key}")
            if done.returncode != 0:
                sys.stderr.write(done.stderr[-3000:])
                return 2
        for key in args.models.split(","):
            for workers in map(int, args.workers.split(",")):
                api = start_api(server.url, workdir, workers=workers, WINE_MODEL_NAME=f"wine-{key}")
                try:
                    name = f"{key} workers={workers}"
                    results[name] = figures = measure_api(
                        api.url, one, batch, args.seconds, args.repeat
                    )
                    say(f"{name} {json.dumps(figures)}")
                    if args.py_spy and workers == 1:
                        (pid,) = worker_pids(api.process.pid)
                        seconds = args.profile_seconds
                        for what, url, body, t, c in (
                            ("predict", api.url + "/predict", one, 2, 8),
                            ("batch", api.url + "/predict/batch", batch, 1, 1),
                        ):
                            text = profile(
                                args.py_spy, pid, seconds,
                                partial(run_wrk, url, body, seconds, t, c),
                                workdir / f"profile-{key}-{what}",
                            )  # fmt: skip
                            say(f"--- profile {key} {what} (one worker) ---\n{text}")
                finally:
                    api.stop()
        if not args.no_ceiling:
            for workers in map(int, args.workers.split(",")):
                top = ceiling(workers, one, args.seconds, args.repeat)
                results[f"ceiling workers={workers}"] = top
                say(f"ceiling workers={workers} {json.dumps(top)}")
    finally:
        server.stop()
    say(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
