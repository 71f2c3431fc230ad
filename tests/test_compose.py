"""The compose file as Docker Compose itself reads it (``docker compose config``).

Every long-running service is hardened, secrets reach containers only as files, and nothing
but the user-facing ports is published. The e2e tests check the same on running containers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import compose_config, make_env

#: One-shot jobs; everything else runs until stopped.
ONE_SHOT = {"model-training"}
#: Ports a person or a program on the host uses; everything else stays on compose networks.
PUBLISHED = {
    "mlflow-server": {5000},
    "mlflow-exporter": {8000},
    "prediction-api": {7654},
    "prometheus": {9090},
    "alertmanager": {9093},
    "model-training-webhook": {8090},  # /status of retraining; Alertmanager's calls need the token
    "grafana": {3000},
    "jenkins": {8080},
}


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``docker compose config`` of the stack with every profile, on a fresh ``make env``."""
    workdir = tmp_path_factory.mktemp("compose")
    env_file, secrets = workdir / "test.env", workdir / "secrets"
    make_env(env_file, secrets)
    loaded = compose_config(env_file, secrets, "--profile", "ci")
    loaded["_env_file"] = env_file
    return loaded


def _long_running(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in config["services"].items() if n not in ONE_SHOT}


def test_every_long_running_service_is_hardened(config: dict[str, Any]) -> None:
    services = _long_running(config)
    assert {"mlflow-db", "mlflow-server", "prediction-api", "prometheus", "jenkins"} <= set(
        services
    )
    for name, service in services.items():
        assert service.get("cap_drop") == ["ALL"], name
        assert "no-new-privileges:true" in service.get("security_opt", []), name
        assert int(service.get("mem_limit", 0)) > 0, name
        assert int(service.get("pids_limit", 0)) > 0, name
        assert service.get("init") is True, name
        assert service.get("restart") in ("unless-stopped", "always"), name
        assert service.get("healthcheck", {}).get("test"), name


def test_images_we_build_run_read_only_with_a_private_tmp(config: dict[str, Any]) -> None:
    # Jenkins images extend the official ones, which write to their home: not read-only.
    built = {
        n: s for n, s in config["services"].items() if "build" in s and not n.startswith("jenkins")
    }
    assert {"mlflow-server", "model-training", "mlflow-exporter", "prediction-api"} <= set(built)
    for name, service in built.items():
        assert service.get("read_only") is True, name
        assert any(str(t).startswith("/tmp") for t in service.get("tmpfs", [])), name


def test_no_password_is_an_environment_variable(config: dict[str, Any]) -> None:
    env_file: Path = config["_env_file"]
    pairs = [line.partition("=")[::2] for line in env_file.read_text().splitlines()]
    secrets = {v for k, v in pairs if k.endswith(("_PASSWORD", "_SECRET_KEY")) and v}
    assert len(secrets) >= 7
    for name, service in config["services"].items():
        values = set((service.get("environment") or {}).values())
        assert not values & secrets, f"{name} has a secret in its environment"


def test_mlflow_clients_log_in_as_their_own_user_and_never_unpickle(
    config: dict[str, Any],
) -> None:
    users = {
        "model-training": "trainer",
        "prediction-api": "prediction-api",
        "mlflow-exporter": "mlflow-exporter",
    }
    for name, user in users.items():
        env = config["services"][name]["environment"]
        assert env["MLFLOW_TRACKING_USERNAME"] == user
        assert env["MLFLOW_TRACKING_PASSWORD_FILE"].startswith("/run/secrets/")
        assert env["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] == "false"


def test_only_user_facing_ports_are_published_and_only_on_localhost(
    config: dict[str, Any],
) -> None:
    for name, service in config["services"].items():
        published = {int(p["target"]) for p in service.get("ports", [])}
        assert published == PUBLISHED.get(name, set()), name
        assert {p.get("host_ip") for p in service.get("ports", [])} <= {"127.0.0.1"}, name
