"""The ci profile of docker-compose.yaml: the Docker socket only where builds run.

The controller (service ``jenkins``) is a web application: no socket, no executor. The build
agent (``jenkins-agent``) holds the socket, runs every build and joins the controller by
itself. Jenkins cannot run on these machines, so the compose file, casc.yaml, the agent image
and the Jenkinsfile are checked against each other here.
"""

from __future__ import annotations

import importlib.util
import re
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.jenkins.pipeline import JENKINSFILE, REPO, strip_comments
from tests.jenkins.test_jenkins_as_code import option, swarm_client_command

COMPOSE = REPO / "docker-compose.yaml"
SOCKET = "/var/run/docker.sock"
WORKSPACES = "/var/lib/wine-mlops-ci/workspace"
CI_SERVICES = ("jenkins", "jenkins-agent")

_SPEC = importlib.util.spec_from_file_location("init_env", REPO / "tools" / "init_env.py")
assert _SPEC is not None
assert _SPEC.loader is not None
init_env = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(init_env)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def casc() -> dict[str, Any]:
    return yaml.safe_load((REPO / "jenkins" / "casc.yaml").read_text())


def mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """``(source, target)`` of a service's volumes, short (``a:b[:ro]``) or long syntax."""
    found = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume["source"], volume["target"]
        found.append((source, target))
    return found


def secret_names(service: dict[str, Any]) -> set[str]:
    """The compose secrets a service mounts (short or long syntax)."""
    return {s if isinstance(s, str) else s["source"] for s in service.get("secrets", [])}


def test_only_the_build_agent_mounts_the_docker_socket(compose: dict[str, Any]) -> None:
    holders = {
        name
        for name, service in compose["services"].items()
        if any(SOCKET in (source, target) for source, target in mounts(service))
    }
    assert holders == {"jenkins-agent"}


def test_the_controller_has_no_socket_no_docker_group_and_no_workspace(
    compose: dict[str, Any], casc: dict[str, Any]
) -> None:
    controller = compose["services"]["jenkins"]
    assert "group_add" not in controller
    assert all("docker" not in source for source, _ in mounts(controller))
    assert all(not source.startswith("/var/lib/wine-mlops-ci") for source, _ in mounts(controller))
    assert casc["jenkins"]["numExecutors"] == 0


def test_the_agent_has_the_socket_its_group_and_the_workspaces_at_the_host_path(
    compose: dict[str, Any],
) -> None:
    agent = compose["services"]["jenkins-agent"]
    assert (SOCKET, SOCKET) in mounts(agent)
    # Same path on both sides: the compose bind mounts of a build resolve on the host.
    assert (WORKSPACES, WORKSPACES) in mounts(agent)
    # Jenkins puts an agent's workspaces under <fsroot>/workspace.
    assert option(swarm_client_command(), "-fsroot") + "/workspace" == WORKSPACES
    assert agent["group_add"] == ["${DOCKER_GID:-999}"]
    assert agent["build"]["context"] == "jenkins"
    assert (REPO / "jenkins" / agent["build"]["dockerfile"]).is_file()
    for name in CI_SERVICES:
        assert compose["services"][name]["profiles"] == ["ci"]


@pytest.mark.parametrize("name", CI_SERVICES)
def test_both_ci_containers_are_hardened(compose: dict[str, Any], name: str) -> None:
    service = compose["services"][name]
    assert service["security_opt"] == ["no-new-privileges:true"]
    assert service["cap_drop"] == ["ALL"]
    assert service["init"] is True
    assert service["restart"] == "unless-stopped"
    assert re.fullmatch(r"\d+[mg]", str(service["mem_limit"]))
    assert int(service["pids_limit"]) > 0
    assert service["healthcheck"]["test"][0] == "CMD"


def test_the_healthchecks_ask_the_login_page_and_the_docker_engine(
    compose: dict[str, Any],
) -> None:
    controller = compose["services"]["jenkins"]["healthcheck"]["test"]
    assert controller[1] == "curl"
    assert controller[-1] == "http://127.0.0.1:8080/login"
    agent = compose["services"]["jenkins-agent"]["healthcheck"]["test"]
    assert agent[1:3] == ["docker", "version"]  # fails when DOCKER_GID is not the socket's


def test_the_agent_waits_for_the_controller_and_reaches_it_by_name(
    compose: dict[str, Any],
) -> None:
    agent = compose["services"]["jenkins-agent"]
    assert agent["depends_on"]["jenkins"]["condition"] == "service_healthy"
    url = urllib.parse.urlsplit(option(swarm_client_command(), "-url"))
    assert url.hostname == "jenkins"
    published = compose["services"]["jenkins"]["ports"]
    assert any(str(port).endswith(f":{url.port}") for port in published)
    assert set(agent["networks"]) & set(compose["services"]["jenkins"]["networks"])


def test_passwords_reach_the_ci_containers_as_files(
    compose: dict[str, Any], casc: dict[str, Any]
) -> None:
    services = compose["services"]
    assert secret_names(services["jenkins"]) == {
        "jenkins-admin-password",
        "jenkins-agent-password",
        "wine-mlops-env",
    }
    assert secret_names(services["jenkins-agent"]) == {"jenkins-agent-password"}
    for name in ("jenkins-admin-password", "jenkins-agent-password"):
        assert compose["secrets"][name] == {"file": f"${{SECRETS_DIR:-./.secrets}}/{name}"}
    for name in CI_SERVICES:
        environment = services[name].get("environment", {})
        assert not [key for key in environment if "PASSWORD" in key], name
    # The agent signs in with the very secret that defines the `agent` user's password.
    password_file = Path(option(swarm_client_command(), "-passwordFile"))
    assert password_file.parent == Path("/run/secrets")
    users = {user["id"]: user for user in casc["jenkins"]["securityRealm"]["local"]["users"]}
    assert users[option(swarm_client_command(), "-username")]["password"] == (
        "${" + password_file.name + "}"
    )


def test_make_env_writes_the_secret_files_compose_mounts_for_jenkins_and_grafana(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    secrets = tmp_path / "secrets"
    init_env.main(
        ["--env", str(tmp_path / ".env"), "--example", str(REPO / ".env.example"),
         "--secrets", str(secrets)]
    )  # fmt: skip
    for name in ("jenkins-admin-password", "jenkins-agent-password", "grafana-admin-password"):
        file = compose["secrets"][name]["file"].replace("${SECRETS_DIR:-./.secrets}", str(secrets))
        assert len(Path(file).read_text().strip()) >= 32, name


def test_the_jenkinsfile_runs_on_the_agents_label() -> None:
    source = strip_comments(JENKINSFILE.read_text())
    agents = re.findall(r"\bagent\s*(\{[^}]*\}|any|none)", source)
    assert len(agents) == 1, agents  # one pipeline-wide agent, no stage elsewhere
    label = re.fullmatch(r"\{\s*label\s+'([^']+)'\s*\}", agents[0])
    assert label, agents[0]
    assert label.group(1) == option(swarm_client_command(), "-labels")
