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

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from schemathesis.core.warnings import SchemathesisWarning

#: The seed every run uses, so that a run can be compared with the last one.
FIXED_SEED = 15
PHASES = "examples,coverage,fuzzing"

#: Feedback names predictions by the ids of earlier answers: the random ids schemathesis
#: sends are unknown, so their documented answer is 404 (or 503 without a log). For those
#: operations the warnings about valid input answered 4xx are off (``missing_test_data``;
#: schemathesis 4.32 records it whenever ``validation_mismatch`` is on); every other
#: warning stays on.
_FEEDBACK_WARNINGS = [
    warning.value
    for warning in SchemathesisWarning
    if warning
    not in (
        SchemathesisWarning.MISSING_TEST_DATA,
        SchemathesisWarning.VALIDATION_MISMATCH,
        SchemathesisWarning.LOW_VALID_RATE,  # opt-in, off for every operation
    )
]
CONFIG = f"""
[[operations]]
include-path-regex = "^/feedback"
warnings = {json.dumps(_FEEDBACK_WARNINGS)}
"""


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
        workdir: Where schemathesis may write (it keeps no example database) and where
            its configuration (:data:`CONFIG`) is written.
        exclude_checks: Checks to leave out (e.g. ``not_a_server_error`` while the API
            answers its documented 503).
    """
    config = workdir / "schemathesis.toml"
    config.write_text(CONFIG)
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config),
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
