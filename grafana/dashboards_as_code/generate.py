"""Renders every dashboard to JSON and writes it to ``grafana/dashboards/``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import dashboard as dashboard_builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from grafana.dashboards_as_code import model_health, model_quality, platform, prediction_api

#: Where Grafana's file provider reads the dashboards (grafana/provisioning/dashboards).
OUTPUT_DIR = Path(__file__).resolve().parents[1] / "dashboards"

#: File name -> builder of each dashboard.
DASHBOARDS: dict[str, Callable[[], dashboard_builder.Dashboard]] = {
    f"{model_quality.UID}.json": model_quality.build,
    f"{prediction_api.UID}.json": prediction_api.build,
    f"{platform.UID}.json": platform.build,
    f"{model_health.UID}.json": model_health.build,
}


def _number_panels(panels: list[dict[str, Any]], start: int = 1) -> int:
    """Gives every panel (rows included) a stable id, in order; returns the next id."""
    next_id = start
    for panel in panels:
        panel["id"] = next_id
        next_id += 1
        next_id = _number_panels(panel.get("panels", []), next_id)
    return next_id


def render(build: Callable[[], dashboard_builder.Dashboard]) -> str:
    """The JSON text of one dashboard: stable key order, 2-space indent, final newline."""
    document = json.loads(JSONEncoder().encode(build().build()))
    _number_panels(document.get("panels", []))
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def render_all() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {name: render(build) for name, build in DASHBOARDS.items()}


def write_all(output_dir: Path = OUTPUT_DIR) -> list[Path]:
    """Writes every dashboard into ``output_dir`` and returns the paths written."""
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_all().items():
        path = output_dir / name
        path.write_text(text)
        written.append(path)
    return written
