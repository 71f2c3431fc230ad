"""Health probes without curl.

``python -m wine_mlops.healthcheck URL`` is the containers' healthcheck: it exits 0 when the
URL answers 2xx, 1 otherwise. :func:`wait_until_healthy` is used by the dev runner and tests.
"""

from __future__ import annotations

import subprocess
import sys
import urllib.request

from wine_mlops.waiting import wait_until


def is_healthy(url: str, timeout: float = 4.0) -> bool:
    """True when ``url`` answers a 2xx status within ``timeout`` seconds."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
            return 200 <= response.status < 300
    except OSError:
        return False


def wait_until_healthy(
    url: str, timeout: float = 60.0, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Polls ``url`` until it answers 2xx.

    Args:
        url: The health endpoint.
        timeout: Longest wait in seconds.
        process: The process serving it; the wait fails early if it exits.

    Raises:
        RuntimeError: When the process exits first.
        TimeoutError: When the URL does not answer in time.
    """

    def answered() -> bool:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} answered")
        return is_healthy(url, timeout=2)

    wait_until(answered, url, timeout=timeout, interval=0.3)


def main(argv: list[str] | None = None) -> int:
    """Checks one URL; returns the exit code."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m wine_mlops.healthcheck URL\n")
        return 2
    if is_healthy(args[0]):
        return 0
    sys.stderr.write(f"{args[0]}: not healthy\n")
    return 1


if __name__ == "__main__":
    sys.exit(main())
