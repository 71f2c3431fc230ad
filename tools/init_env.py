"""``make env``: creates or completes ``.env`` and writes its secrets as files for compose.

    python3 tools/init_env.py [--env .env] [--example .env.example] [--secrets .secrets]

1. ``.env`` missing: it is copied from ``.env.example`` with every empty secret (a variable
   ending in ``_PASSWORD``, ``_SECRET_KEY`` or ``_TOKEN``) set to a fresh random value, mode 600.
2. ``.env`` present (e.g. from an earlier version of the stack): variables that the example
   has and ``.env`` lacks are appended (secrets random, others with the example's value), and
   empty secrets are filled. A value already set is never changed.
3. Every secret of ``.env`` is written to ``<secrets>/<name>`` (``MLFLOW_ADMIN_PASSWORD`` ->
   ``mlflow-admin-password``), which compose mounts into the containers that need it as
   ``/run/secrets/<name>``: passwords never travel as environment variables. The folder is
   private to its owner (mode 700); the files are readable by the containers' users.

Standard library only: it runs before the virtual environment exists.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import sys
from datetime import UTC, datetime
from pathlib import Path

_LINE = re.compile(r"^([A-Z][A-Z0-9_]*)=(.*)$")


def is_secret(name: str) -> bool:
    """True for the variables whose values are secrets."""
    return name.endswith(("_PASSWORD", "_SECRET_KEY", "_TOKEN"))


def secret_file_name(name: str) -> str:
    """The file name of a secret: ``MLFLOW_ADMIN_PASSWORD`` -> ``mlflow-admin-password``."""
    return name.lower().replace("_", "-")


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def read_env(path: Path) -> dict[str, str]:
    """The variables of an env file (comments and blank lines skipped, quotes removed)."""
    found: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if match := _LINE.match(line.strip()):
            found[match.group(1)] = _unquote(match.group(2))
    return found


def _new_secret() -> str:
    return secrets.token_urlsafe(32)


def complete_env(env_path: Path, example_path: Path) -> list[str]:
    """Creates or completes the env file; returns the names it set."""
    example_lines = example_path.read_text().splitlines()
    if not env_path.exists():
        lines = []
        added = []
        for line in example_lines:
            match = _LINE.match(line)
            if match and is_secret(match.group(1)) and not match.group(2).strip():
                line = f"{match.group(1)}={_new_secret()}"
                added.append(match.group(1))
            lines.append(line)
        old_umask = os.umask(0o077)
        try:
            env_path.write_text("\n".join(lines) + "\n")
        finally:
            os.umask(old_umask)
        return added

    lines = env_path.read_text().splitlines()
    added = []
    for index, line in enumerate(lines):  # fill empty secrets in place
        match = _LINE.match(line)
        if match and is_secret(match.group(1)) and not _unquote(match.group(2)):
            lines[index] = f"{match.group(1)}={_new_secret()}"
            added.append(match.group(1))
    present = set(read_env(env_path))
    missing = []
    for line in example_lines:
        match = _LINE.match(line)
        if match and match.group(1) not in present:
            name, value = match.group(1), match.group(2)
            missing.append(f"{name}={_new_secret() if is_secret(name) and not value else value}")
            added.append(name)
    if missing:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d")
        lines += ["", f"# Added by `make env` on {stamp} (new in .env.example):", *missing]
    if added:
        env_path.write_text("\n".join(lines) + "\n")
    return added


def write_secrets(env_path: Path, secrets_dir: Path) -> list[str]:
    """Writes every secret of the env file to its own file; returns the files changed.

    Raises:
        SystemExit: When a secret is empty.
    """
    values = read_env(env_path)
    empty = sorted(name for name, value in values.items() if is_secret(name) and not value)
    if empty:
        raise SystemExit(f"{env_path}: empty secrets: {', '.join(empty)} (run `make env`)")
    secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    secrets_dir.chmod(0o700)
    changed = []
    for name, value in sorted(values.items()):
        if not is_secret(name):
            continue
        path = secrets_dir / secret_file_name(name)
        if path.exists() and path.read_text() == value:
            continue
        path.write_text(value)
        # Readable by the containers' own users (uid 10001, postgres, ...): the folder keeps
        # other host users out.
        path.chmod(0o644)
        changed.append(path.name)
    return changed


def main(argv: list[str] | None = None) -> int:
    """Completes the env file and writes the secret files."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", type=Path, default=Path(".env"))
    parser.add_argument("--example", type=Path, default=Path(".env.example"))
    parser.add_argument("--secrets", type=Path, default=Path(".secrets"))
    args = parser.parse_args(argv)
    created = not args.env.exists()
    added = complete_env(args.env, args.example)
    if created:
        note = "mode 600; keep it out of git"
        print(f"wrote {args.env} with {len(added)} new random secrets ({note})")  # noqa: T201
    elif added:
        print(f"{args.env}: added {', '.join(added)}")  # noqa: T201
    changed = write_secrets(args.env, args.secrets)
    if changed:
        print(f"{args.secrets}/: wrote {', '.join(changed)}")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
