"""Prediction API speed: single-row latency, throughput at concurrency 8, batch of 1,000.

Starts a real MLflow server (SQLite), trains the real champion (LogisticRegression, 2 CV
folds), starts ``python -m prediction_api`` and measures over loopback with keep-alive
connections. The baseline, measured in the same run, is the champion's own in-process
``predict_proba`` on one row, run by onnxruntime from its ONNX graph (what the API calls).
Target: the API's single-row p50 is at most 1 ms above that baseline; the script exits 1
when it is not.

Usage: python bench/bench_prediction_api.py [--requests 3000]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from devstack import auth_env, start_api, start_mlflow_server
from wine_mlops.features import FEATURE_NAMES, load_wine_frame

TARGET_OVERHEAD_MS = 1.0
CONCURRENCY = 8


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def timed_posts(url: str, path: str, body: bytes, count: int) -> list[float]:
    """POSTs ``body`` ``count`` times over one keep-alive connection; seconds per request."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    headers = {"Content-Type": "application/json"}
    timings = []
    for _ in range(count):
        start = time.perf_counter()
        conn.request("POST", path, body, headers)
        response = conn.getresponse()
        response.read()
        timings.append(time.perf_counter() - start)
        if response.status != 200:
            raise SystemExit(f"POST {path} answered {response.status}")
    conn.close()
    return timings


def model_baseline(tracking_uri: str, row: list[float], count: int) -> float:
    """p50 of the champion's own ``predict_proba`` on one row, in seconds, in process.

    The champion as the API runs it: its ONNX graph, loaded by the same safe loader and
    checked by the same code (:func:`prediction_api.serving.load_onnx_classifier`).
    """
    import numpy as np
    from mlflow.tracking import MlflowClient

    from prediction_api.serving import load_onnx_classifier
    from wine_mlops.model_files import load_version_files

    client = MlflowClient(tracking_uri)
    version = client.get_model_version_by_alias("wine-classifier", "champion").version
    files = load_version_files(
        client, tracking_uri, "wine-classifier", str(version), prefer_onnx=True
    )
    if files.onnx_model is None:
        raise SystemExit(f"champion v{version} has no ONNX graph")
    model = load_onnx_classifier(files.onnx_model)
    matrix = np.asarray([row], dtype=np.float64)
    for _ in range(200):
        model.predict_proba(matrix)
    timings = []
    for _ in range(count):
        start = time.perf_counter()
        model.predict_proba(matrix)
        timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-api-"))
    server = start_mlflow_server(
        workdir, {"MLFLOW_BACKEND_STORE_URI": f"sqlite:///{workdir / 'mlflow.db'}"}
    )
    os.environ.update(auth_env("trainer"))  # the training below logs in as the stack's does
    api = None
    try:
        training = subprocess.run(
            [sys.executable, "-m", "model_training", "--candidates", "LogisticRegression",
             "--cv-folds", "2"],
            env={**os.environ, "MLFLOW_TRACKING_URI": server.url,
                 "MLFLOW_DISABLE_TELEMETRY": "true"},
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if training.returncode != 0:
            sys.stderr.write(training.stderr[-3000:])
            return 2
        api = start_api(server.url, workdir)
        frame = load_wine_frame()
        row = [float(v) for v in frame[list(FEATURE_NAMES)].iloc[0]]
        one = json.dumps(dict(zip(FEATURE_NAMES, row, strict=True))).encode()
        rows = frame[list(FEATURE_NAMES)].to_dict("records")
        batch = json.dumps([rows[i % len(rows)] for i in range(1000)]).encode()

        proba_p50 = model_baseline(server.url, row, args.requests)

        timed_posts(api.url, "/predict", one, 300)  # warm-up
        single = timed_posts(api.url, "/predict", one, args.requests)
        p50, p99 = statistics.median(single), percentile(single, 0.99)

        per_thread = max(1, args.requests // CONCURRENCY)
        results: list[list[float]] = [[] for _ in range(CONCURRENCY)]

        def worker(i: int) -> None:
            results[i] = timed_posts(api.url, "/predict", one, per_thread)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(CONCURRENCY)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        concurrent = [t for r in results for t in r]

        timed_posts(api.url, "/predict/batch", batch, 5)
        batches = timed_posts(api.url, "/predict/batch", batch, 40)
    finally:
        if api is not None:
            api.stop()
        server.stop()

    overhead = (p50 - proba_p50) * 1000
    ms = 1000
    lines = [
        "prediction API (LogisticRegression champion, one worker, loopback, keep-alive)",
        f"  model's own predict_proba, 1 row (ONNX), in process: p50 {proba_p50 * ms:.3f} ms",
        f"  POST /predict, 1 row, sequential ({args.requests}):  p50 {p50 * ms:.3f} ms, "
        f"p99 {p99 * ms:.3f} ms",
        f"  POST /predict, concurrency {CONCURRENCY} ({len(concurrent)}):  "
        f"{len(concurrent) / elapsed:.0f} req/s, p50 {statistics.median(concurrent) * ms:.3f} ms, "
        f"p99 {percentile(concurrent, 0.99) * ms:.3f} ms",
        f"  POST /predict/batch, 1,000 rows (40):  p50 {statistics.median(batches) * ms:.2f} ms, "
        f"p99 {percentile(batches, 0.99) * ms:.2f} ms",
        f"  overhead p50 over the model's own predict_proba: {overhead:.3f} ms "
        f"(target <= {TARGET_OVERHEAD_MS:.1f} ms): "
        + ("OK" if overhead <= TARGET_OVERHEAD_MS else "MISSED"),
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0 if overhead <= TARGET_OVERHEAD_MS else 1


if __name__ == "__main__":
    sys.exit(main())
