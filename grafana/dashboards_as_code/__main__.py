"""``python -m grafana.dashboards_as_code [--check]``: write (or check) the dashboard JSON."""

from __future__ import annotations

import argparse
import sys

from grafana.dashboards_as_code.generate import OUTPUT_DIR, render_all, write_all


def main(argv: list[str] | None = None) -> int:
    """Writes every dashboard to ``grafana/dashboards/``, or checks that it is up to date.

    Args:
        argv: Command-line arguments (``--check`` only compares).

    Returns:
        The exit code: 0, or 1 when ``--check`` finds a stale or missing file.
    """
    parser = argparse.ArgumentParser(prog="python -m grafana.dashboards_as_code")
    parser.add_argument(
        "--check", action="store_true", help="fail if the committed JSON differs from the code"
    )
    args = parser.parse_args(argv)
    if args.check:
        stale = [
            name
            for name, text in render_all().items()
            if not (OUTPUT_DIR / name).is_file() or (OUTPUT_DIR / name).read_text() != text
        ]
        if stale:
            sys.stderr.write(
                f"out of date: {', '.join(stale)}; run `make dashboards` and commit the result\n"
            )
            return 1
        return 0
    for path in write_all():
        sys.stdout.write(f"wrote {path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
