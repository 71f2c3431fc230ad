"""Latency of repeated requests on one reused HTTP connection (shows Nagle-style stalls).

Usage: python bench/keepalive_latency.py URL [REQUESTS]
Prints p50/p99 in milliseconds. A server that does not set TCP_NODELAY shows ~40 ms here.
"""

from __future__ import annotations

import http.client
import statistics
import sys
import time
from urllib.parse import urlsplit


def measure(url: str, requests: int = 200) -> list[float]:
    """Times ``requests`` GETs of ``url`` over one keep-alive connection, in seconds."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    timings = []
    for _ in range(requests):
        start = time.perf_counter()
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        timings.append(time.perf_counter() - start)
        if response.status >= 400:
            raise SystemExit(f"{url} answered {response.status}")
    conn.close()
    return timings


def main() -> None:
    url = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    timings = sorted(measure(url, count))
    p50 = statistics.median(timings) * 1000
    p99 = timings[int(len(timings) * 0.99) - 1] * 1000
    sys.stdout.write(f"{url}: {count} keep-alive requests, p50 {p50:.2f} ms, p99 {p99:.2f} ms\n")


if __name__ == "__main__":
    main()
