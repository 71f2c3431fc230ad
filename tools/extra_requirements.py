"""Prints the hashed requirements one compose service installs: its part of requirements.lock.

An image installs only its service's extra (plus the base ``dependencies``), at the versions
of the one lockfile, checked against the lockfile's hashes::

    python3 tools/extra_requirements.py prediction-api > /tmp/requirements.txt
    pip install --require-hashes --no-deps -r /tmp/requirements.txt && pip check

``--require-hashes`` needs every package that gets installed, transitive ones included, in
the requirements file with its hashes (pip refuses hashes in a constraints file). So this
prints the lockfile's entries for the extra's direct requirements and for everything they
need, found through the lockfile's ``# via`` annotations: ``X`` "via ``Y``" means that ``Y``
needs ``X``. An entry whose only reason is ``via wine-mlops (pyproject.toml)`` is a direct
requirement of some extra and is printed only for the services whose extra names it.

Each entry is printed on one line (``name==version ; marker --hash=sha256:... ...``); entries
with an environment marker that does not apply (another Python, Windows) are printed too,
and pip skips them.

Runs on a bare Python 3.11 (standard library only): images call it before installing anything.

Usage: python3 tools/extra_requirements.py SERVICE [--lock FILE] [--pyproject FILE]
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The name at the start of a PEP 508 requirement ("mlflow[auth]==3.17.2" -> "mlflow").
_NAME = re.compile(r"^\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")
# The extras right after the name ("wine-mlops[a, b]" -> "a, b").
_EXTRAS = re.compile(r"^\s*[A-Za-z0-9._-]+\s*\[([^\]]*)\]")
# uv's annotations: "# via NAME", or "# via" followed by one "#   NAME" line per name.
_VIA_HEADER = re.compile(r"^# via(?: (.+))?$")
_VIA_MORE = re.compile(r"^#   (\S.*)$")
# What uv writes after a project's name when the project itself asks for a package.
_SOURCE_SUFFIX = re.compile(r"\s*\(.*\)\s*$")


def normalize(name: str) -> str:
    """The PEP 503 normalized form of a project name (``Flask_WTF`` -> ``flask-wtf``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    """The normalized project name of a PEP 508 requirement string."""
    match = _NAME.match(requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return normalize(match.group(1))


def requirement_extras(requirement: str) -> list[str]:
    """The normalized extras a PEP 508 requirement string asks for (``x[a,b]`` -> a, b)."""
    match = _EXTRAS.match(requirement)
    if match is None:
        return []
    return [normalize(extra.strip()) for extra in match.group(1).split(",") if extra.strip()]


@dataclass(frozen=True)
class LockEntry:
    """One pinned requirement of the lockfile.

    Attributes:
        name: normalized project name.
        line: the requirement with its marker and hashes, on one line.
        via: normalized names of the packages that need it (without the project itself).
        direct: whether the project's pyproject.toml asks for it (in some extra).
    """

    name: str
    line: str
    via: frozenset[str]
    direct: bool


def parse_lock(text: str, project: str) -> list[LockEntry]:
    """Reads a ``uv pip compile --generate-hashes`` lockfile.

    Args:
        text: the lockfile's content.
        project: the name of the project whose pyproject.toml was compiled.

    Returns:
        The entries in the lockfile's order (one name may have several entries, one per
        environment marker).
    """
    project = normalize(project)
    entries: list[LockEntry] = []
    parts: list[str] = []
    via: set[str] = set()
    direct = False
    in_via = False

    def flush() -> None:
        if parts:
            line = " ".join(" ".join(parts).split())
            entries.append(LockEntry(requirement_name(line), line, frozenset(via), direct))

    for raw in text.splitlines():
        stripped = raw.strip()
        annotation = _VIA_HEADER.match(stripped) or (_VIA_MORE.match(stripped) if in_via else None)
        if annotation:
            in_via = True
            name = normalize(_SOURCE_SUFFIX.sub("", annotation.group(1) or ""))
            if not parts or not name or name.startswith("-"):  # "-r file": not a package
                continue
            if name == project:
                direct = True
            else:
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
        direct = False
    flush()
    return entries


def direct_requirements(project: Mapping[str, Any], service: str) -> set[str]:
    """Normalized names of what a service's extra asks for, base ``dependencies`` included.

    An extra that names the project itself (``wine-mlops[a,b]``) includes those extras.

    Raises:
        KeyError: if the project has no such extra.
    """
    extras = {normalize(name): value for name, value in project["optional-dependencies"].items()}
    own_name = normalize(project["name"])
    names: set[str] = set()
    pending, seen = [normalize(service)], set()
    while pending:
        extra = pending.pop()
        if extra in seen:
            continue
        seen.add(extra)
        if extra not in extras:
            raise KeyError(extra)
        for requirement in extras[extra]:
            name = requirement_name(requirement)
            if name == own_name:
                pending.extend(requirement_extras(requirement))
            else:
                names.add(name)
    names.update(requirement_name(requirement) for requirement in project.get("dependencies", []))
    return names


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


def service_requirements(lock_text: str, project: Mapping[str, Any], service: str) -> list[str]:
    """The hashed lockfile lines a service installs, in the lockfile's order.

    Raises:
        KeyError: if the project has no extra named ``service``.
        ValueError: if a direct requirement is not locked as one (a stale lockfile), or an
            entry of the result has no hash.
    """
    entries = parse_lock(lock_text, project["name"])
    roots = direct_requirements(project, service)
    missing = roots - {entry.name for entry in entries if entry.direct}
    if missing:
        raise ValueError(
            f"not locked as direct requirements: {', '.join(sorted(missing))} (run `make lock` "
            "after changing pyproject.toml)"
        )
    wanted = closure(entries, roots)
    lines = [entry.line for entry in entries if entry.name in wanted]
    unhashed = [line for line in lines if "--hash=" not in line]
    if unhashed:
        raise ValueError(f"entries without hashes (run `make lock`): {', '.join(unhashed)}")
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("service", help="an extra of pyproject.toml, e.g. prediction-api")
    parser.add_argument("--lock", type=Path, default=Path("requirements.lock"))
    parser.add_argument("--pyproject", type=Path, default=Path("pyproject.toml"))
    args = parser.parse_args(argv)
    with args.pyproject.open("rb") as handle:
        project = tomllib.load(handle)["project"]
    try:
        lines = service_requirements(args.lock.read_text(), project, args.service)
    except KeyError:
        known = ", ".join(project.get("optional-dependencies", {}))
        raise SystemExit(
            f"no extra named {args.service!r} in {args.pyproject}; known: {known}"
        ) from None
    except ValueError as error:
        raise SystemExit(f"{args.lock}: {error}") from None
    sys.stdout.write("".join(f"{line}\n" for line in lines))


if __name__ == "__main__":
    main()
