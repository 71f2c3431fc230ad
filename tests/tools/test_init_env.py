"""`make env`: a new .env gets random secrets; an old one is completed, never changed."""

import importlib.util
import stat
from pathlib import Path

import pytest

from tests.support.processes import REPO

_SPEC = importlib.util.spec_from_file_location("init_env", REPO / "tools" / "init_env.py")
assert _SPEC is not None
assert _SPEC.loader is not None
init_env = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(init_env)

EXAMPLE = REPO / ".env.example"


def test_a_new_env_gets_a_distinct_random_value_for_every_secret(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    init_env.main(["--env", str(env), "--example", str(EXAMPLE), "--secrets", str(tmp_path / "s")])
    values = init_env.read_env(env)
    secrets = {k: v for k, v in values.items() if init_env.is_secret(k)}
    assert {"MLFLOW_ADMIN_PASSWORD", "MLFLOW_FLASK_SECRET_KEY", "POSTGRES_PASSWORD"} <= set(secrets)
    assert all(len(v) >= 32 for v in secrets.values())
    assert len(set(secrets.values())) == len(secrets)
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    for name, value in secrets.items():
        assert (tmp_path / "s" / init_env.secret_file_name(name)).read_text() == value
    assert stat.S_IMODE((tmp_path / "s").stat().st_mode) == 0o700


def test_an_env_of_an_earlier_version_is_completed_without_changing_a_value(
    tmp_path: Path,
) -> None:
    env = tmp_path / ".env"
    env.write_text("POSTGRES_USER=mlflow\nPOSTGRES_PASSWORD=old-password\nPOSTGRES_DB=mlflow\n")
    init_env.main(["--env", str(env), "--example", str(EXAMPLE), "--secrets", str(tmp_path / "s")])
    values = init_env.read_env(env)
    assert values["POSTGRES_USER"] == "mlflow"  # the existing superuser name stays
    assert values["POSTGRES_PASSWORD"] == "old-password"
    assert len(values["MLFLOW_TRAINER_PASSWORD"]) >= 32
    assert values["MLFLOW_ADMIN_USERNAME"] == "admin"
    again = env.read_text()
    init_env.main(["--env", str(env), "--example", str(EXAMPLE), "--secrets", str(tmp_path / "s")])
    assert env.read_text() == again  # a second run changes nothing


def test_an_empty_secret_is_filled_and_a_secret_file_follows_an_edited_value(
    tmp_path: Path,
) -> None:
    env = tmp_path / ".env"
    env.write_text("MLFLOW_ADMIN_PASSWORD=\nGRAFANA_ADMIN_PASSWORD=chosen-by-hand\n")
    secrets = tmp_path / "s"
    init_env.main(["--env", str(env), "--example", str(EXAMPLE), "--secrets", str(secrets)])
    assert len(init_env.read_env(env)["MLFLOW_ADMIN_PASSWORD"]) >= 32
    assert (secrets / "grafana-admin-password").read_text() == "chosen-by-hand"
    env.write_text(env.read_text().replace("chosen-by-hand", "rotated"))
    init_env.main(["--env", str(env), "--example", str(EXAMPLE), "--secrets", str(secrets)])
    assert (secrets / "grafana-admin-password").read_text() == "rotated"


def test_secret_files_refuse_an_empty_secret(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("MLFLOW_ADMIN_PASSWORD=\n")
    with pytest.raises(SystemExit, match="MLFLOW_ADMIN_PASSWORD"):
        init_env.write_secrets(env, tmp_path / "s")
