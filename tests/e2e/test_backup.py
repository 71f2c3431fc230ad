"""`make backup`, `make destroy-data`, `make restore`: nothing lost, even with new secrets.

Runs before test_upgrade (see MODULE_ORDER), on the session's stack. The restore happens as
after the loss of a machine: every secret of the env file is new (a fresh `make env`), so the
restored MLflow users must log in with the passwords of the current env file, not the backed-up
ones. The restored stack is started with `make deploy serve`: `make up` would also train a new
session, which may promote a new version.

The prediction log (database ``monitoring``) goes along: its rows are counted in the manifest and
in the restored database, its tables are the superuser's with the grants of
mlflow-db/monitoring.sql again, and the restored API answers feedback on a prediction labelled
before the backup as already recorded.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import shutil
import tarfile
import time
from pathlib import Path
from typing import Any

import mlflow
import pytest
import requests
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from model_training.data import load_dataset
from tests.e2e.conftest import API, Stack
from wine_mlops.waiting import wait_until

pytestmark = pytest.mark.e2e

MODEL = "wine-classifier"


def _observe(stack: Stack, downloads: Path) -> dict[str, Any]:
    """What a user of the stack sees, through MLflow's API (as admin) and the prediction API."""
    client = MlflowClient(stack.mlflow_url, stack.mlflow_url)
    experiments = client.search_experiments(view_type=ViewType.ALL)
    runs = client.search_runs(
        [e.experiment_id for e in experiments], run_view_type=ViewType.ALL, max_results=5000
    )
    metrics = {
        (run.info.run_id, key): [(m.step, m.value, m.timestamp) for m in history]
        for run in runs
        for key in run.data.metrics
        if (history := client.get_metric_history(run.info.run_id, key))
    }
    versions = client.search_model_versions(max_results=1000)
    models = client.search_registered_models()
    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert champion.run_id is not None
    mlflow.set_tracking_uri(stack.mlflow_url)  # models:/ URIs are resolved with the default
    model_dir = mlflow.artifacts.download_artifacts(
        f"models:/{MODEL}/{champion.version}", dst_path=str(downloads / "model")
    )
    report = client.download_artifacts(
        champion.run_id, "evaluation/classification_report.txt", str(downloads)
    )
    answer = requests.get(
        f"{stack.mlflow_url}/api/2.0/mlflow/users/list", auth=stack.login("admin"), timeout=10
    )
    answer.raise_for_status()
    # Listed in the table's physical order, which a password update changes: sorted here.
    users = sorted(answer.json()["users"], key=lambda user: user["id"])
    for role in (role for user in users for role in user["roles"]):
        role["permissions"].sort(key=lambda permission: permission["id"])
    rows = load_dataset().features.to_dict(orient="records")
    predictions = requests.post(f"{API}/predict/batch", json=rows, timeout=60)
    predictions.raise_for_status()
    # Every answer has a new prediction_id: the rest of the answer must stay the same.
    answers = [
        {key: value for key, value in answer.items() if key != "prediction_id"}
        for answer in predictions.json()
    ]
    return {
        "experiments": sorted((e.experiment_id, e.name, e.lifecycle_stage) for e in experiments),
        "runs": sorted(
            (r.info.run_id, r.info.status, r.data.params, r.data.tags.get("mlflow.runName"))
            for r in runs
        ),
        "metrics": metrics,
        "versions": sorted((v.version, v.run_id, v.tags) for v in versions),
        "aliases": {m.name: m.aliases for m in models},
        "champion": champion.version,
        "served": requests.get(f"{API}/model", timeout=10).json()["model_version"],
        "users": users,
        "model_files": {
            str(path.relative_to(model_dir)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(Path(model_dir).rglob("*"))
            if path.is_file()
        },
        "report": Path(report).read_bytes(),
        "predictions": answers,
    }


def _psql(stack: Stack, database: str, sql: str) -> str:
    """One query as the superuser inside mlflow-db (its one-line answer)."""
    return stack.compose(
        "exec", "-T", "mlflow-db", "psql", "-U", stack.setting("POSTGRES_USER"), "-d", database,
        "-XAtc", sql,
    ).strip()  # fmt: skip


def _log_counts(stack: Stack) -> dict[str, int]:
    """The prediction log's rows, as the manifest counts them."""
    answer = _psql(
        stack,
        "monitoring",
        "SELECT json_build_object('predictions', (SELECT count(*) FROM predictions),"
        " 'feedback', (SELECT count(*) FROM feedback))",
    )
    return dict(json.loads(answer))


def _log_privileges(stack: Stack) -> set[tuple[str, str, str]]:
    """Owner ("OWNER") and every other role's privileges on the prediction log's tables."""
    answer = _psql(
        stack,
        "monitoring",
        "SELECT jsonb_agg(jsonb_build_array(relname, pg_get_userbyid(relowner), 'OWNER'))"
        " || coalesce((SELECT jsonb_agg(jsonb_build_array(c.relname,"
        "   CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END,"
        "   a.privilege_type)) FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a"
        "   WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'"
        "   AND a.grantee <> c.relowner), '[]')"
        " FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'",
    )
    return {(table, role, privilege) for table, role, privilege in json.loads(answer)}


#: What mlflow-db/monitoring.sql grants (the stack's default role names).
MONITORING_SQL_PRIVILEGES = {
    ("predictions", "monitoring_app", "SELECT"), ("predictions", "monitoring_app", "INSERT"),
    ("predictions", "monitoring_app", "DELETE"), ("feedback", "monitoring_app", "SELECT"),
    ("feedback", "monitoring_app", "INSERT"), ("predictions", "monitoring_reader", "SELECT"),
    ("feedback", "monitoring_reader", "SELECT"),
}  # fmt: skip


def _label_predictions() -> list[dict[str, Any]]:
    """Ten wines predicted, five of them labelled with their true class through the API."""
    dataset = load_dataset()
    wines = dataset.features.head(10).to_dict(orient="records")
    answers = requests.post(f"{API}/predict/batch", json=wines, timeout=30)
    answers.raise_for_status()
    feedback = [
        {"prediction_id": answer["prediction_id"], "true_class_id": int(true_class)}
        for answer, true_class in zip(answers.json(), dataset.target.head(10), strict=True)
    ]
    wait_until(  # the predictions reach the log within a flush interval
        lambda: (
            requests.post(f"{API}/feedback/batch", json=feedback[:5], timeout=30).status_code == 200
        ),
        "feedback to be accepted",
        timeout=30,
        interval=1,
    )
    return feedback


def _settled_log_counts(stack: Stack) -> dict[str, int]:
    """The log's counts once no row is on its way (the same in two reads 2 s apart)."""
    readings = [_log_counts(stack)]

    def unchanged() -> bool:
        time.sleep(2)  # four flush intervals of the e2e stack
        readings.append(_log_counts(stack))
        return readings[-1] == readings[-2]

    wait_until(unchanged, "the prediction log to settle", timeout=60, interval=0)
    return readings[-1]


def _manifest(archive: Path) -> dict[str, Any]:
    with tarfile.open(archive) as tar:
        member = tar.extractfile("manifest.json")
        assert member is not None
        return dict(json.load(member))


def _with_wrong_file_count(archive: Path, target: Path) -> Path:
    """A copy whose manifest (not a member: every checksum holds) claims one artifact more."""
    with tarfile.open(archive) as source, tarfile.open(target, "w") as copy:
        for member in source.getmembers():
            data = source.extractfile(member)
            assert data is not None
            content = data.read()
            if member.name == "manifest.json":
                manifest = json.loads(content)
                manifest["volumes"]["mlflow-artifacts"]["files"] += 1
                content = json.dumps(manifest).encode()
                member.size = len(content)
            copy.addfile(member, io.BytesIO(content))
    return target


def _running(stack: Stack) -> set[str]:
    return set(stack.compose("ps", "--status", "running", "--services").split())


def _new_secrets(stack: Stack) -> None:
    """Every secret of the env file gets a new random value, as a fresh `make env` would."""
    lines = []
    for line in stack.env_file.read_text().splitlines():
        key, sep, _ = line.partition("=")
        secret = sep and key.endswith(("_PASSWORD", "_SECRET_KEY"))
        lines.append(f"{key}={secrets.token_urlsafe(32)}" if secret else line)
    stack.env_file.write_text("\n".join(lines) + "\n")


def _can_read_the_model(stack: Stack, login: tuple[str, str]) -> int:
    url = f"{stack.mlflow_url}/api/2.0/mlflow/registered-models/get"
    return requests.get(url, params={"name": MODEL}, auth=login, timeout=10).status_code


@pytest.fixture(scope="module")
def backed_up(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The running stack as seen before, and the archive `make backup` wrote of it."""
    workdir = tmp_path_factory.mktemp("backup")
    before = _observe(stack, workdir / "before")
    labelled = _label_predictions()
    log = _settled_log_counts(stack)
    assert log["feedback"] >= 5
    result = stack.make("backup", f"BACKUP_DIR={workdir / 'backups'}")
    archives = list((workdir / "backups").iterdir())
    assert len(archives) == 1, archives  # one archive, no temporary file left
    assert archives[0].name.startswith("wine-mlops-e2e-")
    assert archives[0].name.endswith("Z.tar")
    assert f"wrote {archives[0]}" in result.stdout
    return {
        "before": before,
        "archive": archives[0],
        "workdir": workdir,
        "log": log,
        "labelled": labelled,
    }


def test_the_manifest_counts_what_mlflow_shows(stack: Stack, backed_up: dict[str, Any]) -> None:
    manifest = _manifest(backed_up["archive"])
    before = backed_up["before"]
    assert manifest["format"] == "wine-mlops-backup"
    assert manifest["format_version"] == 2
    assert manifest["mlflow_version"] == mlflow.__version__
    assert manifest["postgresql_version"].startswith("15.")
    assert manifest["databases"]["tracking"]["alembic_revision"]
    assert manifest["counts"] == {
        "experiments": len(before["experiments"]),
        "runs": len(before["runs"]),
        "metrics": sum(len(history) for history in before["metrics"].values()),
        "registered_models": len(before["aliases"]),
        "model_versions": len(before["versions"]),
        "aliases": sum(len(aliases) for aliases in before["aliases"].values()),
        "users": len(before["users"]),
        "predictions": backed_up["log"]["predictions"],
        "feedback": backed_up["log"]["feedback"],
        "artifact_files": manifest["volumes"]["mlflow-artifacts"]["files"],
    }
    assert manifest["databases"]["monitoring"] == {"name": "monitoring"}
    assert manifest["counts"]["artifact_files"] > 10 * manifest["counts"]["model_versions"] > 0
    assert set(manifest["members"]) == {
        "databases/tracking.dump",
        "databases/auth.dump",
        "databases/monitoring.dump",
        "volumes/mlflow-artifacts.tgz",
    } | ({"volumes/grafana-data.tgz"} if not stack.airgap else set())


def test_restore_refuses_a_tampered_archive_and_a_stack_with_data(
    stack: Stack, backed_up: dict[str, Any]
) -> None:
    archive: Path = backed_up["archive"]
    tampered = archive.with_name("tampered.tar")
    shutil.copy(archive, tampered)
    with tarfile.open(tampered) as tar:
        member = tar.getmember("databases/tracking.dump")
    with tampered.open("r+b") as file:
        file.seek(member.offset_data + 100)
        file.write(b"\0" * 8)
    refused = stack.make("restore", f"BACKUP={tampered}", check=False)
    assert refused.returncode != 0
    assert "restore refused: " in refused.stderr
    assert "member databases/tracking.dump fails its checksum" in refused.stderr

    refused = stack.make("restore", f"BACKUP={archive}", check=False)
    assert refused.returncode != 0
    assert "run make destroy-data first" in refused.stderr
    # Nothing was touched: the stack still serves the same champion.
    served = requests.get(f"{API}/model", timeout=10).json()["model_version"]
    assert served == backed_up["before"]["champion"]


def test_destroy_and_restore_with_new_secrets_loses_nothing(
    stack: Stack, backed_up: dict[str, Any]
) -> None:
    before = backed_up["before"]
    old_api_login = stack.login("prediction-api")
    stack.make("destroy-data")
    _new_secrets(stack)
    # The session's MLflow clients log in as the admin: from now on with the new password.
    os.environ["MLFLOW_TRACKING_PASSWORD"] = stack.login("admin")[1]

    # A restore that fails at its last check (the artifacts in staging) leaves nothing behind.
    wrong = _with_wrong_file_count(backed_up["archive"], backed_up["workdir"] / "wrong.tar")
    failed = stack.make("restore", f"BACKUP={wrong}", check=False)
    assert failed.returncode != 0
    assert "the staging databases and folders were dropped" in failed.stderr
    superuser = stack.setting("POSTGRES_USER")
    databases = stack.compose(
        "exec", "-T", "mlflow-db", "psql", "-U", superuser, "-d", "postgres", "-Atc",
        "SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY 1",
    )  # fmt: skip
    assert databases.split() == sorted(["mlflow", "mlflow_auth", "monitoring", "postgres"])
    assert _log_counts(stack) == {"predictions": 0, "feedback": 0}
    # (The restore below also finds the artifact volume empty, or it would refuse.)

    restored = stack.make("restore", f"BACKUP={backed_up['archive']}")
    assert "every checksum matches" in restored.stdout
    assert _running(stack) == {"mlflow-db"}  # mlflow-server starts only on restored databases
    # The prediction log: every row, tables of the superuser with monitoring.sql's grants.
    assert _log_counts(stack) == backed_up["log"]
    superuser = stack.setting("POSTGRES_USER")
    owners = {("predictions", superuser, "OWNER"), ("feedback", superuser, "OWNER")}
    assert _log_privileges(stack) == owners | MONITORING_SQL_PRIVILEGES
    stack.make("deploy", "serve")

    after = _observe(stack, backed_up["workdir"] / "after")
    for key in before:
        assert after[key] == before[key], key
    assert after["served"] == before["champion"]
    # Every user logs in with the current env file's password, and only with it.
    assert _can_read_the_model(stack, stack.login("prediction-api")) == 200
    assert _can_read_the_model(stack, old_api_login) == 401
    # The API (logging in to the log with the new password) finds the labels given before the
    # backup, and records new ones on predictions made before it.
    labelled = backed_up["labelled"]
    answers = requests.post(f"{API}/feedback/batch", json=labelled, timeout=30)
    assert answers.status_code == 200, answers.text
    assert [a["recorded"] for a in answers.json()] == [False] * 5 + [True] * 5
    assert [a["prediction_id"] for a in answers.json()] == [f["prediction_id"] for f in labelled]
