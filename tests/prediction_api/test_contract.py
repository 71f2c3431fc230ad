"""The OpenAPI document is the truth: schemathesis finds nothing against the real API.

A real MLflow server (SQLite), the real trainer and ``python -m prediction_api`` as a real
uvicorn process, with a prediction log (SQLite) so that feedback is recorded. Schemathesis
runs with every check and the examples, coverage and fuzzing phases, once with a fixed seed
and once with a random one (shown in the test's name, to replay a failure), and once more
against an API that has no model to serve yet (every prediction, and all feedback, answers
its documented 503).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devstack import Service, free_port, run_training, start_api, start_mlflow_server
from tests.prediction_api.contract import FIXED_SEED, check_contract

pytestmark = pytest.mark.integration

RANDOM_SEED = random.SystemRandom().randrange(1, 2**31)
NAMES = {"WINE_EXPERIMENT_NAME": "contract", "WINE_MODEL_NAME": "contract-model"}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The API serving a real champion, trained on a private MLflow server."""
    workdir = tmp_path_factory.mktemp("contract")
    server = start_mlflow_server(
        workdir, {"MLFLOW_BACKEND_STORE_URI": f"sqlite:///{workdir / 'mlflow.db'}"}
    )
    process: Service | None = None
    try:
        training = run_training(server.url, candidates="LogisticRegression", **NAMES)
        assert training.returncode == 0, training.stderr[-3000:]
        # with a prediction log (SQLite): feedback answers as documented, never 503
        process = start_api(
            server.url,
            workdir,
            WINE_MODEL_NAME=NAMES["WINE_MODEL_NAME"],
            WINE_MONITORING_DB_URL=f"sqlite:///{workdir / 'monitoring.db'}",
        )
        yield process
    finally:
        if process is not None:
            process.stop()
        server.stop()


@pytest.mark.parametrize(
    "seed", [FIXED_SEED, RANDOM_SEED], ids=[f"seed-{FIXED_SEED}", f"random-seed-{RANDOM_SEED}"]
)
def test_schemathesis_finds_nothing_against_the_serving_api(
    api: Service, seed: int, tmp_path: Path
) -> None:
    print(f"schemathesis seed: {seed}")  # noqa: T201 (shown with the failure, to replay it)
    run = check_contract(api.url, seed, max_examples=100, workdir=tmp_path)
    print(f"schemathesis sent {run.generated} cases")  # noqa: T201
    assert run.clean, run.explain() + f"\nAPI log:\n{api.log()[-3000:]}"
    assert api.process.poll() is None


def test_schemathesis_finds_nothing_while_no_model_is_served(tmp_path: Path) -> None:
    """No registry to reach: every prediction answers 503, which must be as documented."""
    api = start_api(f"http://127.0.0.1:{free_port()}", tmp_path, wait_ready=False)
    try:
        assert httpx.get(f"{api.url}/readyz", timeout=10).status_code == 503
        run = check_contract(
            api.url,
            FIXED_SEED,
            max_examples=30,
            workdir=tmp_path,
            exclude_checks=("not_a_server_error",),  # 503 is the documented answer here
        )
        readiness = api.process.poll()
    finally:
        api.stop()
    assert run.clean, run.explain()
    assert readiness is None
