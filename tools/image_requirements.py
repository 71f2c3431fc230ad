"""Prints the hashed requirements one image installs: its service's part of requirements.lock.

The repository is a workspace: one package per service (``mlflow-server/``,
``prediction-api/``, …) plus the shared ``common/``, each with its own pyproject.toml, and one
lockfile for all of them. An image installs only what its service's package needs, at the
versions of that lockfile, checked against the lockfile's hashes::

    python3 tools/image_requirements.py prediction-api > /tmp/requirements.txt
    pip install --require-hashes --no-deps -r /tmp/requirements.txt

``--require-hashes`` needs every package that gets installed, transitive ones included, in
the requirements file with its hashes (pip refuses hashes in a constraints file). So this
prints the lockfile's entries for the service package's requirements (and those of the
workspace packages it depends on, such as ``wine-mlops-common``) and for everything they
need, found through the lockfile's ``# via`` annotations: ``X`` "via ``Y``" means that ``Y``
needs ``X``, where ``Y`` is a locked package or a workspace package.

Images never install a workspace package's extras (``[project.optional-dependencies]``, such
as the prediction API's ``sklearn``): what a workspace package needs is read from its
``dependencies`` only, while the lockfile's ``via`` annotations name the package for its
extras too (``make install`` installs the whole lockfile, extras included).

Each entry is printed on one line (``name==version ; marker --hash=sha256:... ...``); entries
with an environment marker that does not apply (another Python, Windows) are printed too,
and pip skips them.

Runs on a bare Python 3.11 (standard library only): images call it before installing anything.

Usage: python3 tools/image_requirements.py SERVICE [--root DIR] [--lock FILE]
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# The name at the start of a PEP 508 requirement ("mlflow[auth]==3.17.2" -> "mlflow").
_NAME = re.compile(r"^\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")
# uv's annotations: "# via NAME", or "# via" followed by one "#   NAME" line per name.
_VIA_HEADER = re.compile(r"^# via(?: (.+))?$")
_VIA_MORE = re.compile(r"^#   (\S.*)$")
# What uv writes after a project's name when the project is the compiled file itself:
# "(pyproject.toml)", or "(pyproject.toml:build)" for a dependency group.
_SOURCE_SUFFIX = re.compile(r"\s*\((?:[^:)]*)(?::([^)]+))?\)\s*$")


def normalize(name: str) -> str:
    """The PEP 503 normalized form of a project name (``Flask_WTF`` -> ``flask-wtf``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    """The normalized project name of a PEP 508 requirement string."""
    match = _NAME.match(requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return normalize(match.group(1))


def via_name(annotation: str) -> str:
    """The name an annotation gives: ``wine-mlops (pyproject.toml:build)`` -> ``wine-mlops:build``.

    A dependency group of the compiled project is named ``PROJECT:GROUP``, so that what only
    the dev tools need is told apart from what the build backend needs.
    """
    suffix = _SOURCE_SUFFIX.search(annotation)
    name = normalize(_SOURCE_SUFFIX.sub("", annotation))
    return f"{name}:{suffix.group(1)}" if suffix and suffix.group(1) else name


@dataclass(frozen=True)
class LockEntry:
    """One pinned requirement of the lockfile.

    Attributes:
        name: normalized project name.
        line: the requirement with its marker and hashes, on one line.
        via: normalized names of what needs it: locked packages and workspace packages.
    """

    name: str
    line: str
    via: frozenset[str]


@dataclass(frozen=True)
class Member:
    """One package of the workspace.

    Attributes:
        name: normalized project name (``wine-prediction-api``).
        folder: its folder, relative to the workspace root (``prediction-api``).
        requires: normalized names of what its pyproject.toml asks for.
    """

    name: str
    folder: str
    requires: frozenset[str]


def parse_lock(text: str) -> list[LockEntry]:
    """Reads a ``uv pip compile --generate-hashes`` lockfile.

    Returns:
        The entries in the lockfile's order (one name may have several entries, one per
        environment marker).
    """
    entries: list[LockEntry] = []
    parts: list[str] = []
    via: set[str] = set()
    in_via = False

    def flush() -> None:
        if parts:
            line = " ".join(" ".join(parts).split())
            entries.append(LockEntry(requirement_name(line), line, frozenset(via)))

    for raw in text.splitlines():
        stripped = raw.strip()
        annotation = _VIA_HEADER.match(stripped) or (_VIA_MORE.match(stripped) if in_via else None)
        if annotation:
            in_via = True
            name = via_name(annotation.group(1) or "")
            if parts and name and not name.startswith("-"):  # "-r file": not a package
                via.add(name)
            continue
        in_via = False
        if not stripped or stripped.startswith("#"):
            continue
        if raw[:1].isspace() or stripped.startswith("-"):
            # A continuation of the current entry (its hashes), or an option line.
            if parts and stripped.startswith("--hash="):
                parts.append(stripped.rstrip("\\").strip())
            continue
        flush()
        parts = [stripped.rstrip("\\").strip()]
        via = set()
    flush()
    return entries


def read_workspace(root: Path) -> tuple[str, dict[str, Member]]:
    """The root project's name, and the workspace's packages by folder (from the root's
    ``[tool.uv.workspace] members``)."""
    with (root / "pyproject.toml").open("rb") as handle:
        manifest = tomllib.load(handle)
    folders = manifest["tool"]["uv"]["workspace"]["members"]
    members = {}
    for folder in folders:
        with (root / folder / "pyproject.toml").open("rb") as handle:
            project = tomllib.load(handle)["project"]
        requires = frozenset(requirement_name(r) for r in project.get("dependencies", []))
        members[folder] = Member(normalize(project["name"]), folder, requires)
    return normalize(manifest["project"]["name"]), members


def closure(entries: Iterable[LockEntry], roots: Iterable[str]) -> set[str]:
    """The roots and every locked package they need, directly or not (through ``via``)."""
    entries = list(entries)
    included = set(roots)
    changed = True
    while changed:
        changed = False
        for entry in entries:
            if entry.name not in included and entry.via & included:
                included.add(entry.name)
                changed = True
    return included


def image_requirements(
    lock_text: str, members: Mapping[str, Member], service: str, groups: Iterable[str] = ()
) -> list[str]:
    """The hashed lockfile lines a service's image installs, in the lockfile's order.

    Args:
        lock_text: the lockfile's content.
        members: the workspace's packages by folder.
        service: the folder of the service's package.
        groups: dependency groups of the root project to install as well, named
            ``PROJECT:GROUP`` (``wine-mlops:build``, the build backend).

    Raises:
        KeyError: if no workspace package lives in the folder ``service``.
        ValueError: if a requirement of the service's packages is not locked as one (a stale
            lockfile), or an entry of the result has no hash.
    """
    by_name = {member.name: member for member in members.values()}
    own: dict[str, Member] = {}
    pending = [members[service]]
    while pending:  # the service's package and the workspace packages it depends on
        member = pending.pop()
        if member.name not in own:
            own[member.name] = member
            pending.extend(by_name[name] for name in member.requires if name in by_name)
    entries = parse_lock(lock_text)
    missing = sorted(
        f"{name} (for {member.folder}/)"
        for member in own.values()
        for name in member.requires - by_name.keys()
        if not any(entry.name == name and member.name in entry.via for entry in entries)
    )
    if missing:
        raise ValueError(
            f"not locked as requirements: {', '.join(missing)} (run `make lock` after changing "
            "a pyproject.toml)"
        )
    unknown = [group for group in groups if not any(group in entry.via for entry in entries)]
    if unknown:
        raise ValueError(f"no locked dependency group {', '.join(unknown)} (run `make lock`)")
    # The closure starts from the packages' own dependencies, not from their names: a "via"
    # naming a workspace package may stand for one of its extras, which images leave out.
    direct = {name for member in own.values() for name in member.requires} - by_name.keys()
    wanted = closure(entries, [*direct, *groups])
    lines = [entry.line for entry in entries if entry.name in wanted]
    unhashed = [line for line in lines if "--hash=" not in line]
    if unhashed:
        raise ValueError(f"entries without hashes (run `make lock`): {', '.join(unhashed)}")
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("service", help="a workspace package's folder, e.g. prediction-api")
    parser.add_argument("--root", type=Path, default=Path(), help="the workspace root")
    parser.add_argument("--lock", type=Path, help="default: ROOT/requirements.lock")
    parser.add_argument(
        "--group", action="append", default=[], help="a dependency group of the root, e.g. build"
    )
    args = parser.parse_args(argv)
    lock = args.lock or args.root / "requirements.lock"
    root_name, members = read_workspace(args.root)
    groups = [f"{root_name}:{group}" for group in args.group]
    try:
        lines = image_requirements(lock.read_text(), members, args.service, groups)
    except KeyError:
        known = ", ".join(members)
        raise SystemExit(f"no workspace package in {args.service!r}; known: {known}") from None
    except ValueError as error:
        raise SystemExit(f"{lock}: {error}") from None
    sys.stdout.write("".join(f"{line}\n" for line in lines))


if __name__ == "__main__":
    main()
