"""Reading the Jenkinsfile and the Makefile the way the checks of this package need them."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
JENKINSFILE = REPO / "Jenkinsfile"
MAKEFILE = REPO / "Makefile"

# A sh step: sh '…', sh '''…''', sh "…", sh """…""", sh(script: …).
_SH_STEP = re.compile(r"""\bsh\s*\(?\s*(?:script\s*:\s*)?('''|\"\"\"|'|")""")
# Commands that act on every container, image, volume or network of the host.
HOST_WIDE_DOCKER = re.compile(
    r"""docker\s+(?:
          (?:container\s+|image\s+|volume\s+|network\s+)?rm\b
        | rmi\b
        | (?:system|image|container|volume|network|builder)\s+prune\b
        | (?:container\s+)?(?:kill|stop)\s+\$\(
    )""",
    re.VERBOSE,
)


def strip_comments(groovy: str) -> str:
    """Groovy source without ``//`` line comments and ``/* */`` block comments.

    Good enough for a Jenkinsfile: a ``//`` inside a string (a URL) is kept when a quote
    precedes it on the line.
    """
    without_blocks = re.sub(r"/\*.*?\*/", "", groovy, flags=re.DOTALL)
    lines = []
    for line in without_blocks.splitlines():
        match = re.search(r"(^|\s)//", line)
        if match and line[: match.start()].count("'") % 2 == 0 and '"' not in line[: match.start()]:
            line = line[: match.start()]
        lines.append(line)
    return "\n".join(lines)


def sh_steps(groovy: str) -> list[tuple[str, str]]:
    """Every ``sh`` step: its opening quote and the script text."""
    source = strip_comments(groovy)
    steps = []
    for match in _SH_STEP.finditer(source):
        quote = match.group(1)
        start = match.end()
        end = source.find(quote, start)
        steps.append((quote, source[start:end] if end >= 0 else source[start:]))
    return steps


def make_targets_called(groovy: str) -> list[str]:
    """The make targets the ``sh`` steps call, in the order they appear (``make a b`` = a, b)."""
    targets: list[str] = []
    for _quote, script in sh_steps(groovy):
        for command in re.split(r"[;&|\n]+", script):
            words = shlex.split(command.strip()) if command.strip() else []
            if not words or words[0] != "make":
                continue
            targets += [w for w in words[1:] if not w.startswith("-") and "=" not in w]
    return targets


def stage_targets(groovy: str) -> list[str]:
    """The make targets of the ``stages`` block only (not ``post``), in order."""
    source = strip_comments(groovy)
    start = source.index("stages {")
    post = source.find("\n    post {", start)
    return make_targets_called(source[start : post if post >= 0 else len(source)])


def make_database() -> str:
    """``make -pn``'s database of the Makefile (rules and variables), without running recipes."""
    result = subprocess.run(
        ["make", "--no-print-directory", "-pnr", "-f", str(MAKEFILE), "-C", str(REPO), "help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return result.stdout


def make_targets_defined(database: str) -> set[str]:
    """The explicit targets of a ``make -pn`` database."""
    targets = set()
    for line in database.splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-/$()]+):(?!=)", line)
        if match and not line.startswith(("#", "\t")):
            targets.add(match.group(1))
    return targets


def make_variable(database: str, name: str) -> str | None:
    """The value of a variable in a ``make -pn`` database, or None when it is not defined."""
    match = re.search(rf"^{re.escape(name)} :?= (.*)$", database, flags=re.MULTILINE)
    return match.group(1).strip() if match else None
