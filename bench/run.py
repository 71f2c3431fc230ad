"""``make bench``: runs every ``bench/bench_*.py`` in turn and summarises.

Each benchmark prints its figures next to a baseline measured in the same run and exits
non-zero when its target is missed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    scripts = sorted((REPO / "bench").glob("bench_*.py"))
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    results = []
    for script in scripts:
        sys.stdout.write(f"\n=== {script.stem} ===\n")
        sys.stdout.flush()
        start = time.monotonic()
        code = subprocess.run([sys.executable, str(script)], cwd=REPO, env=env).returncode
        results.append((script.stem, code, time.monotonic() - start))
    sys.stdout.write("\n=== summary ===\n")
    for name, code, seconds in results:
        sys.stdout.write(
            f"{name:32} {'ok' if code == 0 else f'FAILED ({code})':12} {seconds:6.1f} s\n"
        )
    return 0 if all(code == 0 for _, code, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
