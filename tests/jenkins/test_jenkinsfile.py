"""The properties the Jenkinsfile must keep.

Lint-clean; the make targets it calls exist and `make ci` runs them in the same order; no
host-wide Docker clean-up; no Groovy interpolation into `sh`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.jenkins.pipeline import (
    HOST_WIDE_DOCKER,
    JENKINSFILE,
    REPO,
    make_database,
    make_targets_called,
    make_targets_defined,
    make_variable,
    sh_steps,
    stage_targets,
    strip_comments,
)

NPM_TOOLS = REPO / "tools" / "npm"
GROOVY_LINT = NPM_TOOLS / "node_modules" / ".bin" / "npm-groovy-lint"
LINT_CONFIG = REPO / "jenkins" / ".groovylintrc.json"
PINNED_LINTER = "16.2.0"


@pytest.fixture(scope="module")
def jenkinsfile() -> str:
    return JENKINSFILE.read_text()


@pytest.fixture(scope="module")
def groovy_lint() -> Path:
    """npm-groovy-lint at its pinned version, installed from tools/npm's lockfile if missing."""
    if shutil.which("npm") is None or shutil.which("java") is None:
        pytest.fail("npm-groovy-lint needs Node.js (npm) and Java on the machine")
    if not GROOVY_LINT.exists():
        subprocess.run(
            [
                "npm",
                "ci",
                "--prefix",
                str(NPM_TOOLS),
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
            ],
            check=True,
            timeout=600,
        )
    return GROOVY_LINT


def lint(linter: Path, path: Path) -> subprocess.CompletedProcess[str]:
    """Runs npm-groovy-lint offline (``--noserver``) as ``make lint-jenkins`` does."""
    return subprocess.run(
        [str(linter), "--noserver", "--config", str(LINT_CONFIG), "--failon", "info", str(path)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=path.parent,
        env={**os.environ, "NO_COLOR": "1"},
    )


def test_the_linter_is_pinned_in_the_lockfile() -> None:
    package = (NPM_TOOLS / "package.json").read_text()
    lock = (NPM_TOOLS / "package-lock.json").read_text()
    assert f'"npm-groovy-lint": "{PINNED_LINTER}"' in package
    assert f'"version": "{PINNED_LINTER}"' in lock
    # No download addresses in the lockfile: npm takes them from the machine's configuration.
    assert '"resolved"' not in lock
    assert "omit-lockfile-registry-resolved=true" in (NPM_TOOLS / ".npmrc").read_text()


def test_npm_groovy_lint_passes_on_the_jenkinsfile(groovy_lint: Path) -> None:
    result = lint(groovy_lint, JENKINSFILE)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "npm-groovy-lint results in" in result.stdout


def test_every_make_target_the_jenkinsfile_calls_exists_in_the_makefile(jenkinsfile: str) -> None:
    called = make_targets_called(jenkinsfile)
    assert {"lint", "test", "build", "deploy", "train-stack", "smoke"} <= set(called)
    defined = make_targets_defined(make_database())
    missing = sorted(set(called) - defined)
    assert not missing, f"the Jenkinsfile calls make targets the Makefile lacks: {missing}"


def test_make_ci_runs_the_jenkinsfile_stages_in_the_same_order(jenkinsfile: str) -> None:
    stages = make_variable(make_database(), "CI_STAGES")
    assert stages is not None, "the Makefile has no CI_STAGES (the targets `make ci` runs)"
    assert stages.split() == stage_targets(jenkinsfile)


def test_no_host_wide_docker_command(jenkinsfile: str) -> None:
    offending = HOST_WIDE_DOCKER.findall(strip_comments(jenkinsfile))
    assert not offending, offending


def test_sh_steps_are_single_quoted_and_never_interpolate_params(jenkinsfile: str) -> None:
    steps = sh_steps(jenkinsfile)
    assert steps, "no sh step found"
    double = [script for quote, script in steps if quote.startswith('"')]
    assert not double, f"sh steps in double quotes (Groovy interpolation): {double}"
    assert not [s for _q, s in steps if "params." in s or "${" in s]
