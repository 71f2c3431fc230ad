"""Helpers of the compose and settings tests: `make env`'s tool and `docker compose config`.

Services as local processes are started by :mod:`devstack` (tools/devstack).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


def make_env(env_file: Path, secrets_dir: Path) -> None:
    """Runs `make env`'s tool: a fresh env file of random secrets and its secret files."""
    args = ["--env", env_file, "--example", REPO / ".env.example", "--secrets", secrets_dir]
    tool = REPO / "tools/init_env.py"
    subprocess.run([sys.executable, str(tool), *map(str, args)], check=True, capture_output=True)


def compose_config(env_file: Path, secrets_dir: Path, *args: str) -> dict[str, Any]:
    """``docker compose config`` of the repository's stack, as Compose itself reads it.

    Needs the docker CLI with Compose, not a running engine.

    Args:
        env_file: The env file (``--env-file``).
        secrets_dir: Where its secret files are (``SECRETS_DIR``).
        *args: More global options, e.g. ``"--profile", "ci"``.
    """
    if shutil.which("docker") is None:
        pytest.fail("the docker CLI with Compose is needed (.ci/setup-docker.sh installs it)")
    result = subprocess.run(
        ["docker", "compose", "--env-file", str(env_file), *args, "config", "--format", "json"],
        cwd=REPO,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "SECRETS_DIR": str(secrets_dir)},
        capture_output=True,
        text=True,
        check=True,
    )
    config: dict[str, Any] = json.loads(result.stdout)
    return config
