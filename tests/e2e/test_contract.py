"""The OpenAPI document is the truth for the deployed API too: schemathesis finds nothing.

Runs after test_monitoring (see MODULE_ORDER): its requests are mostly invalid on purpose, and
their 4xx share would otherwise leave WineApiHighClientErrorRatio pending while the
monitoring tests check that a healthy stack fires nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import API, Stack
from tests.prediction_api.contract import FIXED_SEED, check_contract

pytestmark = pytest.mark.e2e


def test_schemathesis_finds_nothing_against_the_deployed_api(stack: Stack, tmp_path: Path) -> None:
    """All checks, 3 phases, bounded: at most 20 fuzzed cases per operation (~600 requests)."""
    run = check_contract(API, FIXED_SEED, max_examples=20, workdir=tmp_path)
    assert run.clean, run.explain()
