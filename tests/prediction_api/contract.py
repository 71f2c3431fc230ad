"""The API contract check: schemathesis (``st run``) against a running prediction API.

Schemathesis reads the API's own OpenAPI document and sends what it describes and what it
forbids (the examples, coverage and fuzzing phases), then checks every answer against the
document with all of its checks: status codes, media types, headers and bodies as
documented, schema-valid input accepted, schema-invalid input rejected, 405 with ``Allow``
for undeclared methods. Used by the local contract test and the e2e test alike.

Replay a failure with the seed it printed::

    st run http://127.0.0.1:7654/openapi.json --checks all \\
        --phases examples,coverage,fuzzing --max-examples 100 --seed SEED
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

#: The seed every run uses, so that a run can be compared with the last one.
FIXED_SEED = 15
PHASES = "examples,coverage,fuzzing"


@dataclass(frozen=True)
class ContractRun:
    """What one schemathesis run found.

    Attributes:
        seed: The seed it ran with (to replay it).
        returncode: ``st run``'s exit code: 0 when it found nothing.
        report: Its full report.
    """

    seed: int
    returncode: int
    report: str

    @property
    def generated(self) -> int:
        """How many test cases it generated and sent."""
        found = re.search(r"(\d+) generated", self.report)
        return int(found.group(1)) if found else 0

    @property
    def clean(self) -> bool:
        """Whether it ran every case and found no failure at all."""
        return self.returncode == 0 and "No issues found" in self.report and self.generated > 0

    def explain(self) -> str:
        """The report, with how to replay it, for an assertion message."""
        return f"schemathesis found problems (replay with --seed {self.seed}):\n{self.report}"


def check_contract(
    base_url: str,
    seed: int,
    max_examples: int,
    workdir: Path,
    exclude_checks: tuple[str, ...] = (),
) -> ContractRun:
    """Runs ``st run`` with every check and the examples, coverage and fuzzing phases.

    Args:
        base_url: The API's address, e.g. ``http://127.0.0.1:7654``.
        seed: The random seed of the run.
        max_examples: The most cases per operation in the fuzzing phase.
        workdir: Where schemathesis may write (it keeps no example database).
        exclude_checks: Checks to leave out (e.g. ``not_a_server_error`` while the API
            answers its documented 503).
    """
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{base_url.rstrip('/')}/openapi.json",
        "--checks",
        "all",
        "--phases",
        PHASES,
        "--seed",
        str(seed),
        "--max-examples",
        str(max_examples),
        "--generation-database",
        "none",
        "--request-timeout",
        "30",
        "--no-color",
    ]
    if exclude_checks:
        command += ["--exclude-checks", ",".join(exclude_checks)]
    result = subprocess.run(
        command, cwd=workdir, capture_output=True, text=True, timeout=600, check=False
    )
    return ContractRun(seed, result.returncode, result.stdout + result.stderr)
