"""Stopping local service processes: used by the dev runner (``make dev``) and the tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess


def stop_process_group(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """Stops a process started with ``start_new_session=True`` and its children.

    Sends SIGTERM to its process group (a server and its workers), then SIGKILL after
    ``timeout`` seconds; a process that already exited is left alone.
    """
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout)
