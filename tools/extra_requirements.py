"""Prints the direct requirements of one compose service, read from pyproject.toml.

Images install them with ``pip install -c requirements.lock -r -``, so every image gets
exactly the versions of the one lockfile, and only what its service needs.

Usage: python3 tools/extra_requirements.py SERVICE [PYPROJECT]
"""

import sys
import tomllib


def main() -> None:
    service = sys.argv[1]
    path = sys.argv[2] if len(sys.argv) > 2 else "pyproject.toml"
    with open(path, "rb") as handle:
        project = tomllib.load(handle)["project"]
    extras = project["optional-dependencies"]
    if service not in extras:
        raise SystemExit(f"no extra named {service!r} in {path}; known: {', '.join(extras)}")
    sys.stdout.write("\n".join([*project["dependencies"], *extras[service]]) + "\n")


if __name__ == "__main__":
    main()
