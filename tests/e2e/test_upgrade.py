"""`make up` on the volumes of the previous version: nothing is lost, everything is secured.

The previous version (before MLflow's basic-auth and the database roles) is checked out from
this repository's history and run with its own `make up`, as a user of that version would
have it: MLflow then logged in to PostgreSQL as the superuser and served anyone. The current
`make up` on the same volumes and the same `.env` must keep every run, version and artifact,
add the new secrets to `.env`, move the tables to the non-superuser role and serve the old
champion. Runs last (see MODULE_ORDER): it replaces the session's stack.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import requests
from mlflow.tracking import MlflowClient

from tests.e2e.conftest import API, REPO, Stack, use_e2e_ports

pytestmark = pytest.mark.e2e

#: The last version before the trust boundary (MLflow auth, database roles, secret files).
PREVIOUS_VERSION = "a071b4c"
MODEL = "wine-classifier"


def _state(client: MlflowClient) -> tuple[set[str], set[str], str]:
    experiment = client.get_experiment_by_name("wine-classifier")
    assert experiment is not None
    runs = {r.info.run_id for r in client.search_runs([experiment.experiment_id])}
    versions = {v.version for v in client.search_model_versions(f"name='{MODEL}'")}
    champion = client.get_model_version_by_alias(MODEL, "champion").version
    return runs, versions, champion


def _git(*args: str) -> None:
    subprocess.run(["git", *args], cwd=REPO, check=True, capture_output=True, text=True)


def test_make_up_upgrades_the_volumes_of_the_previous_version(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack.make("destroy-data")
    old_tree = tmp_path / "previous"
    _git("worktree", "add", "--detach", str(old_tree), PREVIOUS_VERSION)
    env_file = tmp_path / "upgrade.env"
    try:
        # The previous version's own `make env` and `make up`.
        subprocess.run(
            [str(old_tree / "tools/init-env.sh"), str(env_file), str(old_tree / ".env.example")],
            check=True,
        )
        use_e2e_ports(env_file)
        old = Stack(env_file, stack.data_dir)
        subprocess.run(
            ["make", "--no-print-directory", "up"],
            cwd=old_tree,
            env=old.env,
            check=True,
            timeout=1800,
            capture_output=True,
        )
        for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            monkeypatch.delenv(key)  # the previous version has no logins
        before = _state(MlflowClient(stack.mlflow_url, stack.mlflow_url))
        subprocess.run(
            ["make", "--no-print-directory", "down"], cwd=old_tree, env=old.env, check=True
        )
    finally:
        _git("worktree", "remove", "--force", str(old_tree))

    upgraded = Stack(env_file, stack.data_dir)
    try:
        upgraded.make("up")  # completes the .env, migrates the database, trains once more
        assert upgraded.setting("POSTGRES_USER") == "mlflow"  # the old superuser, unchanged
        assert len(upgraded.setting("MLFLOW_ADMIN_PASSWORD")) >= 32
        admin, password = upgraded.login("admin")
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", admin)
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
        runs, versions, champion = _state(MlflowClient(stack.mlflow_url, stack.mlflow_url))
        assert before[0] < runs  # every old run kept, and `make up` trained again
        assert before[1] < versions
        assert champion in versions
        search = f"{stack.mlflow_url}/api/2.0/mlflow/experiments/search"
        anonymous = requests.get(search, timeout=10)
        assert anonymous.status_code == 401
        served = requests.get(f"{API}/model", timeout=10).json()
        assert served["model_version"] == champion
        query = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tableowner <> "
        owner = upgraded.setting("MLFLOW_DB_USER")
        psql = ("psql", "-U", "mlflow", "-d", "mlflow", "-tAc", f"{query}'{owner}'")
        out = upgraded.compose("exec", "-T", "mlflow-db", *psql)
        assert out.strip() == "0"  # every MLflow table now belongs to the non-superuser role
    finally:
        upgraded.make("destroy-data", check=False)
