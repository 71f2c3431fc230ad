"""Helpers that prove dashboards and alerts against a real Prometheus (unit and e2e tests).

Grafana cannot run on the development machines, so the dashboards are proven through
their queries: every panel target expression is read from ``grafana/dashboards/*.json``,
its Grafana variables are substituted, and it is evaluated against a Prometheus base URL::

    from tests.monitoring.panels import (
        EMPTY_WHEN_HEALTHY, queries_without_data, targets_not_up, wait_for_alert,
    )

    problems = queries_without_data("http://127.0.0.1:9090")
    assert [p for p in problems if p.query.key not in EMPTY_WHEN_HEALTHY] == []
    assert targets_not_up("http://127.0.0.1:9090") == []
    wait_for_alert("http://127.0.0.1:9090", "WineTargetDown", timeout=180)
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from wine_mlops.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS_DIR = REPO / "grafana" / "dashboards"

#: What Grafana's built-in variables become. ``$__rate_interval`` is at least four scrape
#: intervals (15 s) in Grafana, so 1m; ``$__range`` is the dashboards' default time range.
BUILTIN_VARIABLES: dict[str, str] = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__interval_ms": "15000",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
}

#: Dashboard variables not listed by the caller become this: every dashboard variable is
#: used in a regex matcher (``label=~"$var"``), where ``.*`` means "all".
DEFAULT_VARIABLE_VALUE = ".*"

#: (dashboard uid, panel title) of the lists of firing alerts: empty while nothing fires.
ALERT_LISTS: frozenset[tuple[str, str]] = frozenset(
    {
        ("wine-platform", "Firing alerts (details)"),
        ("wine-model-health", "Retraining alerts (details)"),
    }
)

#: (dashboard uid, panel title) of the live accuracy: nothing until predictions are labelled
#: (POST /feedback); a healthy stack that has received no feedback has none.
EMPTY_WITHOUT_FEEDBACK: frozenset[tuple[str, str]] = frozenset(
    {
        ("wine-model-health", "Live accuracy by version"),
        ("wine-model-health", "Live accuracy of the served version"),
        ("wine-model-health", "Labels behind the live accuracy"),
    }
)

#: (dashboard uid, panel title) of queries that legitimately return nothing while the stack
#: is healthy: the lists of firing alerts, and the live accuracy before any feedback. (The
#: live accuracy's floor line is in the same panel, so that panel always draws something.)
EMPTY_WHEN_HEALTHY: frozenset[tuple[str, str]] = ALERT_LISTS | EMPTY_WITHOUT_FEEDBACK

_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)")
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(.+?)\s*,\s*)?(\w+)\s*\)\s*$")


@dataclass(frozen=True)
class PanelQuery:
    """One query of one dashboard panel (or of a dashboard variable)."""

    dashboard: str
    panel: str
    ref_id: str
    expr: str

    @property
    def key(self) -> tuple[str, str]:
        """(dashboard uid, panel title), as in :data:`EMPTY_WHEN_HEALTHY`."""
        return (self.dashboard, self.panel)


@dataclass(frozen=True)
class QueryProblem:
    """A panel query that returned no data or failed, with the PromQL actually sent."""

    query: PanelQuery
    promql: str
    problem: str

    def __str__(self) -> str:
        return (
            f"{self.query.dashboard} / {self.query.panel} [{self.query.ref_id}]: "
            f"{self.problem}: {self.promql}"
        )


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # panels inside collapsed rows


def load_dashboards(directory: Path = DASHBOARDS_DIR) -> dict[str, dict[str, Any]]:
    """Every dashboard JSON of ``directory``, by uid.

    Raises:
        FileNotFoundError: When the directory holds no dashboard.
    """
    files = sorted(directory.glob("*.json"))
    if not files:
        raise FileNotFoundError(f"no dashboard JSON in {directory}")
    boards = [json.loads(path.read_text()) for path in files]
    return {board["uid"]: board for board in boards}


def panel_queries(directory: Path = DASHBOARDS_DIR) -> list[PanelQuery]:
    """Every target expression of every panel, plus every query variable's query.

    A ``label_values(metric, label)`` variable query becomes ``count by (label) (metric)``
    (``group by (label) ({__name__=~".+"})`` without a metric), the series it lists.
    """
    found: list[PanelQuery] = []
    for uid, board in load_dashboards(directory).items():
        for variable in board.get("templating", {}).get("list", []):
            if variable.get("type") != "query":
                continue
            text = variable.get("query")
            text = text.get("query", "") if isinstance(text, dict) else str(text or "")
            match = _LABEL_VALUES.match(text)
            if match:
                metric, label = match.group(1) or '{__name__=~".+"}', match.group(2)
                text = f"count by ({label}) ({metric})"
            found.append(PanelQuery(uid, f"variable {variable['name']}", "var", text))
        for panel in _panels(board.get("panels", [])):
            for target in panel.get("targets", []):
                if target.get("expr"):
                    found.append(
                        PanelQuery(
                            uid, panel.get("title", ""), target.get("refId", ""), target["expr"]
                        )
                    )
    return found


def substitute(expr: str, variables: Mapping[str, str] | None = None) -> str:
    """Replaces Grafana variables in ``expr`` the way Grafana would before querying.

    Args:
        expr: A panel expression, e.g. ``rate(x{a=~"$experiment"}[$__rate_interval])``.
        variables: Values of dashboard variables; missing ones become
            :data:`DEFAULT_VARIABLE_VALUE`. Built-in ones come from :data:`BUILTIN_VARIABLES`.
    """
    values = {**BUILTIN_VARIABLES, **(variables or {})}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        return values.get(name, DEFAULT_VARIABLE_VALUE)

    return _VARIABLE.sub(replace, expr)


def _api(prometheus_url: str, path: str, **params: str) -> Any:
    response = requests.get(f"{prometheus_url.rstrip('/')}{path}", params=params, timeout=30)
    body = response.json()
    if response.status_code != 200 or body.get("status") != "success":
        raise RuntimeError(f"{path} {params}: {body.get('error', response.text)}")
    return body["data"]


def instant_query(prometheus_url: str, promql: str) -> list[dict[str, Any]]:
    """The result of an instant query (vector samples; a scalar becomes one sample)."""
    data = _api(prometheus_url, "/api/v1/query", query=promql)
    if data["resultType"] in ("scalar", "string"):
        return [{"metric": {}, "value": data["result"]}]
    return list(data["result"])


def queries_without_data(
    prometheus_url: str,
    directory: Path = DASHBOARDS_DIR,
    variables: Mapping[str, str] | None = None,
) -> list[QueryProblem]:
    """Evaluates every panel query now and lists those that return no data or fail.

    Args:
        prometheus_url: Base URL of Prometheus, e.g. ``http://127.0.0.1:9090``.
        directory: Folder of the dashboard JSON files.
        variables: Values for dashboard variables (default: ``.*``, i.e. all).

    Returns:
        One :class:`QueryProblem` per query with an empty result (``no data``) or an error
        (``error: …``, e.g. invalid PromQL). Empty when every panel shows data.
    """
    problems = []
    for found in panel_queries(directory):
        promql = substitute(found.expr, variables)
        try:
            result = instant_query(prometheus_url, promql)
        except RuntimeError as exc:
            problems.append(QueryProblem(found, promql, f"error: {exc}"))
            continue
        if not result:
            problems.append(QueryProblem(found, promql, "no data"))
    return problems


def targets_not_up(prometheus_url: str) -> list[dict[str, Any]]:
    """Active scrape targets whose last scrape failed or has not happened yet.

    Returns:
        ``{"job", "instance", "scrape_url", "health", "error"}`` for each such target.
    """
    data = _api(prometheus_url, "/api/v1/targets", state="active")
    return [
        {
            "job": target["labels"].get("job"),
            "instance": target["labels"].get("instance"),
            "scrape_url": target.get("scrapeUrl"),
            "health": target.get("health"),
            "error": target.get("lastError"),
        }
        for target in data["activeTargets"]
        if target.get("health") != "up"
    ]


def wait_for_targets_up(prometheus_url: str, timeout: float = 120.0) -> None:
    """Waits until every active target is up.

    Raises:
        TimeoutError: Naming the targets still down when ``timeout`` seconds have passed.
    """
    down: list[dict[str, Any]] = []

    def all_up() -> bool:
        down[:] = targets_not_up(prometheus_url)
        return not down

    try:
        wait_until(all_up, "every target up", timeout=timeout, interval=1)
    except TimeoutError:
        raise TimeoutError(f"targets not up after {timeout:.0f} s: {down}") from None


def alerts(prometheus_url: str, state: str | None = None) -> list[dict[str, Any]]:
    """Active alerts (``pending`` or ``firing``), optionally only those in ``state``."""
    found = _api(prometheus_url, "/api/v1/alerts")["alerts"]
    return [alert for alert in found if state is None or alert["state"] == state]


def firing_alerts(prometheus_url: str) -> list[dict[str, Any]]:
    """Alerts in the firing state (each with ``labels``, ``annotations``, ``activeAt``)."""
    return alerts(prometheus_url, "firing")


def wait_for_alert(
    prometheus_url: str,
    name: str,
    timeout: float = 300.0,
    labels: Mapping[str, str] | None = None,
    state: str = "firing",
) -> dict[str, Any]:
    """Waits until alert ``name`` (with at least ``labels``) reaches ``state``.

    Args:
        prometheus_url: Base URL of Prometheus.
        name: The alert name, e.g. ``WineTargetDown``.
        timeout: Seconds to wait; mind the rule's ``for`` duration.
        labels: Labels the alert must carry, e.g. ``{"job": "prediction-api"}``.
        state: ``firing`` (default) or ``pending``.

    Returns:
        The alert as the Prometheus API shows it.

    Raises:
        TimeoutError: With the alerts seen last, when ``timeout`` seconds have passed.
    """
    wanted = {"alertname": name, **(labels or {})}
    seen: list[dict[str, Any]] = []

    def reached() -> dict[str, Any] | None:
        seen[:] = alerts(prometheus_url)
        matching = (a for a in seen if a["state"] == state)
        return next((a for a in matching if wanted.items() <= a["labels"].items()), None)

    try:
        return wait_until(reached, f"{name} {state}", timeout=timeout, interval=1)
    except TimeoutError:
        summary = [(a["labels"].get("alertname"), a["state"]) for a in seen]
        raise TimeoutError(
            f"{name} {labels or ''} not {state} after {timeout:.0f} s: {summary}"
        ) from None
