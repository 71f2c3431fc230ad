"""Jenkins as code: pinned plugins, JCasC security and job, the image, the push hook."""

from __future__ import annotations

import http.server
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


@pytest.mark.parametrize(
    "line", ["git", "git:latest", "git:experimental", "git: 5.10.1", "git:>=5", "git:5.1 # x"]
)
def test_the_pin_check_refuses(line: str) -> None:
    with pytest.raises(ValueError, match="pinned"):
        plugin_pins(f"junit:1.30\n{line}\n")


@pytest.fixture(scope="module")
def casc() -> dict:
    return yaml.safe_load((JENKINS / "casc.yaml").read_text())


def test_casc_admin_comes_from_the_environment_and_nobody_else_gets_in(casc: dict) -> None:
    jenkins = casc["jenkins"]
    local = jenkins["securityRealm"]["local"]
    assert local["allowsSignup"] is False
    (admin,) = local["users"]
    assert admin["password"] == "${JENKINS_ADMIN_PASSWORD}"
    strategy = jenkins["authorizationStrategy"]
    assert strategy == {"loggedInUsersCanDoAnything": {"allowAnonymousRead": False}}
    assert "standard" in jenkins["crumbIssuer"]  # CSRF protection
    assert jenkins["slaveAgentPort"] == -1  # no inbound agent port
    assert "remotingSecurity" not in jenkins  # always on since 2.326; never turned off here
    assert casc["security"]["gitHooks"] == {"allowedOnAgents": False, "allowedOnController": False}


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


def test_the_image_is_pinned_runs_as_jenkins_and_carries_docker_and_its_config() -> None:
    dockerfile = (JENKINS / "Dockerfile").read_text()
    base = re.search(r"^ARG JENKINS_IMAGE=(\S+)$", dockerfile, flags=re.MULTILINE)
    assert base, "the base image is not a build argument"
    assert re.fullmatch(r"jenkins/jenkins:\d+\.\d+\.\d+-jdk\d+", base.group(1))
    assert re.search(r"^FROM \$\{JENKINS_IMAGE\}$", dockerfile, flags=re.MULTILINE)
    users = re.findall(r"^USER (\S+)$", dockerfile, flags=re.MULTILINE)
    assert users[-1] == "jenkins"
    assert "jenkins-plugin-cli --plugin-file /usr/share/jenkins/ref/plugins.txt" in dockerfile
    assert "CASC_JENKINS_CONFIG=/usr/share/jenkins/ref/casc.yaml" in dockerfile
    assert "runSetupWizard=false" in dockerfile
    assert "docker.io" in dockerfile
    assert "cli-plugins/docker-compose" in dockerfile


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
