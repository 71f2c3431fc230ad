"""Grafana as code: committed JSON up to date, one datasource uid, provisioning, helpers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from grafana.dashboards_as_code import OUTPUT_DIR, render_all
from grafana.dashboards_as_code.__main__ import main as generator_main
from tests.monitoring.panels import (
    DASHBOARDS_DIR,
    EMPTY_WHEN_HEALTHY,
    load_dashboards,
    panel_queries,
    substitute,
)

REPO = Path(__file__).resolve().parents[2]
PROVISIONING = REPO / "grafana" / "provisioning"
UID = "prometheus"


def datasource_refs(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every ``datasource`` value anywhere in a dashboard, with its JSON path."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield f"{path}.{key}", value
            yield from datasource_refs(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from datasource_refs(value, f"{path}[{index}]")


def foreign_datasources(board: dict[str, Any]) -> list[str]:
    """Paths of datasource references other than ``{"type": "prometheus", "uid": UID}``,
    and of panels with queries but no datasource of their own."""
    wrong = [
        path
        for path, ref in datasource_refs(board)
        if not (isinstance(ref, dict) and ref.get("uid") == UID and ref.get("type") == "prometheus")
    ]
    for index, panel in enumerate(board.get("panels", [])):
        if panel.get("targets") and "datasource" not in panel:
            wrong.append(f".panels[{index}] (no datasource)")
        for target_index, target in enumerate(panel.get("targets", [])):
            if "datasource" not in target:
                wrong.append(f".panels[{index}].targets[{target_index}] (no datasource)")
    return wrong


def test_committed_dashboards_are_generated_from_the_code() -> None:
    rendered = render_all()
    committed = {path.name: path.read_text() for path in OUTPUT_DIR.glob("*.json")}
    assert set(committed) == set(rendered), "run `make dashboards` and commit grafana/dashboards"
    for name, text in rendered.items():
        assert committed[name] == text, f"{name} is stale: run `make dashboards` and commit it"


def test_the_generator_check_mode_detects_a_stale_file(tmp_path: Path, monkeypatch: Any) -> None:
    import grafana.dashboards_as_code.__main__ as cli

    for name, text in render_all().items():
        (tmp_path / name).write_text(text)
    monkeypatch.setattr(cli, "OUTPUT_DIR", tmp_path)
    assert generator_main(["--check"]) == 0
    stale = next(iter(tmp_path.glob("*.json")))
    stale.write_text(stale.read_text().replace("Wine MLOps", "Hand edited"))
    assert generator_main(["--check"]) == 1


def test_every_panel_uses_only_the_provisioned_datasource_uid() -> None:
    boards = load_dashboards()
    assert set(boards) == {
        "wine-model-quality",
        "wine-prediction-api",
        "wine-platform",
        "wine-model-health",
    }
    for uid, board in boards.items():
        assert list(datasource_refs(board)), uid
        assert foreign_datasources(board) == [], uid


def test_dashboards_answer_the_issue_questions() -> None:
    titles = {
        uid: {panel["title"] for panel in board["panels"]}
        for uid, board in load_dashboards().items()
    }
    assert {
        "Test accuracy",
        "Precision (macro)",
        "Recall (macro)",
        "F1 (macro)",
        "Version per alias",
        "Runs per experiment",
        "Test accuracy over time",
    } <= titles["wine-model-quality"]
    assert {
        "Requests per second by status",
        "Error ratio",
        "Requests in progress",
        "Latency p50 / p90 / p99",
        "Share of requests under 100 ms",
        "Predictions per cultivar",
        "Served model version",
        "Model loads in the time range",
        "Out-of-range values per feature in the time range",
    } <= titles["wine-prediction-api"]
    assert {
        "Scrape targets",
        "MLflow requests per second by status",
        "MLflow latency p50 / p99",
        "Snapshot age and refresh duration",
        "Firing alerts (details)",
    } <= titles["wine-platform"]
    assert {
        "Live accuracy by version",
        "Labels behind the live accuracy",
        "Feedback per second, correct and wrong",
        "Drift by feature (PSI)",
        "Drift window rows",
        "Prediction log rows written and dropped per second",
        "Retraining alerts received in the time range",
        "Retraining alerts",
    } <= titles["wine-model-health"]
    assert {(uid, t) for uid, names in titles.items() for t in names} >= EMPTY_WHEN_HEALTHY


def test_api_latency_panels_chart_the_api_not_prometheus() -> None:
    """The thesis charted Prometheus's own handlers; ours must read the API's histogram."""
    api = [q for q in panel_queries() if q.dashboard == "wine-prediction-api"]
    exprs = " ".join(q.expr for q in api)
    assert "prometheus_http" not in exprs
    records = {
        rule["record"]: rule["expr"]
        for group in yaml.safe_load((REPO / "prometheus/rules/recording.yml").read_text())["groups"]
        for rule in group["rules"]
    }

    def expand(expr: str) -> str:  # recording-rule names replaced by what they compute
        for _ in range(5):
            for name, body in records.items():
                expr = expr.replace(name, f"({body})")
        return expr

    latency = [q for q in api if "atency" in q.panel or "100 ms" in q.panel]
    assert len(latency) >= 5
    for found in latency:
        assert "wine_api_request_duration_seconds_bucket{" in expand(found.expr), found


def test_panel_queries_are_extracted_with_variables_substituted() -> None:
    found = panel_queries()
    assert len(found) >= 30
    variable = next(q for q in found if q.panel == "variable experiment")
    assert variable.expr == "count by (experiment) (mlflow_run_start_timestamp_seconds)"
    rate = next(q for q in found if q.panel == "Requests per second by status")
    assert "$__rate_interval" in rate.expr
    assert "$" not in substitute(rate.expr)
    assert substitute('rate(x{e=~"$experiment"}[$__rate_interval]) [$__range] ${experiment}') == (
        'rate(x{e=~".*"}[1m]) [1h] .*'
    )
    assert substitute('x{e=~"[[experiment]]"}', {"experiment": "wine"}) == 'x{e=~"wine"}'
    assert substitute("x[$__interval]", {"__interval": "30s"}) == "x[30s]"


def test_grafana_provisioning_points_at_prometheus_and_the_dashboards() -> None:
    datasources = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert (source["uid"], source["type"], source["url"]) == (
        UID,
        "prometheus",
        "http://prometheus:9090",
    )
    providers = yaml.safe_load((PROVISIONING / "dashboards" / "dashboards.yml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["folder"]
    assert provider["options"]["path"] == "/etc/grafana/dashboards"
    assert DASHBOARDS_DIR == OUTPUT_DIR
