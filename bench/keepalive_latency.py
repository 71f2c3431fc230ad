"""Latency of repeated requests on one reused HTTP connection (shows Nagle-style stalls).

Usage: python bench/keepalive_latency.py URL [REQUESTS]
A server that does not set TCP_NODELAY shows about 40 ms extra per request here.
"""

from __future__ import annotations

import base64
import http.client
import sys
import time
from urllib.parse import urlsplit


def measure(url: str, requests: int = 200, login: tuple[str, str] | None = None) -> list[float]:
    """Times ``requests`` GETs of ``url`` over one keep-alive connection, in milliseconds.

    ``login`` (user, password) is sent with HTTP basic auth, as MLflow's clients do.
    """
    parts = urlsplit(url)
    headers = {}
    if login is not None:
        token = base64.b64encode(f"{login[0]}:{login[1]}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    timings = []
    try:
        for _ in range(requests):
            start = time.perf_counter()
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            response.read()
            timings.append((time.perf_counter() - start) * 1000)
            if response.status >= 400:
                raise RuntimeError(f"{url} answered {response.status}")
    finally:
        conn.close()
    return timings


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered)) - 1))
    return ordered[rank]


def main() -> None:
    url = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    timings = measure(url, count)
    sys.stdout.write(
        f"{url}: {count} keep-alive requests, p50 {percentile(timings, 50):.2f} ms, "
        f"p99 {percentile(timings, 99):.2f} ms\n"
    )


if __name__ == "__main__":
    main()
