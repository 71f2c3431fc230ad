"""The builders every dashboard is described with, over Grafana's foundation SDK.

A dashboard module lists its rows and, in each, its panels::

    new_dashboard(UID, "Title", "What it answers.", ["tag"], rows={
        "Row title": [
            stat_panel("Title", "What it shows.", query(rate("x_total", API)), size=(6, 4)),
        ],
    })

Every panel and query goes to the provisioned Prometheus datasource (uid ``prometheus``);
the SDK's dashboard builder lays panels out from their ``size`` (columns of 24, height).
The PromQL helpers (``rate``, ``increase``, ``quantile``) write the sums the panels share.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from string import ascii_uppercase
from typing import TypeVar

from grafana_foundation_sdk.builders import (
    bargauge,
    piechart,
    prometheus,
    stat,
    table,
    timeseries,
)
from grafana_foundation_sdk.builders import common as common_builder
from grafana_foundation_sdk.builders import dashboard as dashboard_builder
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import common, dashboard
from grafana_foundation_sdk.models import prometheus as prometheus_model

#: The datasource every panel uses: provisioned with this fixed uid.
DATASOURCE = dashboard.DataSourceRef(type_val="prometheus", uid="prometheus")

#: Selector of the prediction API's series.
API = 'job="prediction-api"'

#: Selector of the API's user traffic: Prometheus scrapes and container probes left out.
API_TRAFFIC = f'{API}, route!~"/metrics|/healthz|/readyz"'

#: A panel's size on the grid: (width in columns of 24, height in grid rows).
Size = tuple[int, int]

#: The panel builders of the SDK that the factories below return.
Panel = TypeVar("Panel", timeseries.Panel, stat.Panel, bargauge.Panel, table.Panel, piechart.Panel)


# PromQL ---------------------------------------------------------------------------------


def _sum(expr: str, by: str) -> str:
    return f"sum by ({by}) ({expr})" if by else f"sum({expr})"


def rate(metric: str, selector: str, *, by: str = "") -> str:
    """The summed per-second rate of a counter over Grafana's ``$__rate_interval``.

    Args:
        metric: The counter (or histogram bucket) name.
        selector: Its label matchers, without braces, e.g. ``API``.
        by: Labels to keep, e.g. ``"route, method"``; none sums everything.
    """
    return _sum(f"rate({metric}{{{selector}}}[$__rate_interval])", by)


def increase(metric: str, selector: str, *, by: str = "") -> str:
    """The summed increase of a counter over the dashboard's time range (``$__range``)."""
    return _sum(f"increase({metric}{{{selector}}}[$__range])", by)


def quantile(q: float, histogram: str, selector: str, *, by: str = "") -> str:
    """A quantile (e.g. ``0.99``) of a histogram's ``_bucket`` series, per ``by`` labels."""
    labels = f"{by}, le" if by else "le"
    return f"histogram_quantile({q}, {rate(histogram, selector, by=labels)})"


def query(expr: str, legend: str = "", *, instant: bool = False) -> prometheus.Dataquery:
    """A PromQL query on the provisioned Prometheus (its ref id is set by the panel).

    Args:
        expr: The PromQL expression (Grafana variables such as ``$__rate_interval`` allowed).
        legend: The legend format, e.g. ``{{status}}``.
        instant: An instant query (tables, stats of the current value) instead of a range.
    """
    built = prometheus.Dataquery().expr(expr).datasource(DATASOURCE)
    if legend:
        built = built.legend_format(legend)
    if instant:
        return built.instant().format(prometheus_model.PromQueryFormat.TABLE)
    return built.range()


# Colours and value mappings -------------------------------------------------------------


def thresholds(*steps: tuple[float | None, str]) -> dashboard_builder.ThresholdsConfig:
    """Absolute thresholds, e.g. ``(None, "red"), (0.9, "green")``."""
    return (
        dashboard_builder.ThresholdsConfig()
        .mode(dashboard.ThresholdsMode.ABSOLUTE)
        .steps([dashboard.Threshold(value=value, color=color) for value, color in steps])
    )


def yes_no(yes: str, no: str) -> list[dashboard.ValueMapping]:
    """Texts for a 0/1 gauge: ``yes`` in green for 1, ``no`` in red for 0."""
    return [
        dashboard.ValueMap(
            options={
                "1": dashboard.ValueMappingResult(text=yes, color="green", index=0),
                "0": dashboard.ValueMappingResult(text=no, color="red", index=1),
            }
        )
    ]


def bad_above(warning: float, bad: float) -> dashboard_builder.ThresholdsConfig:
    """Green, yellow from ``warning``, red from ``bad`` (errors, latency, age)."""
    return thresholds((None, "green"), (warning, "yellow"), (bad, "red"))


def good_above(warning: float, good: float) -> dashboard_builder.ThresholdsConfig:
    """Red, yellow from ``warning``, green from ``good`` (accuracy, share of fast answers)."""
    return thresholds((None, "red"), (warning, "yellow"), (good, "green"))


def _last_value() -> common_builder.ReduceDataOptions:
    return common_builder.ReduceDataOptions().calcs(["lastNotNull"]).values(False)


# Panels ---------------------------------------------------------------------------------


def _panel(
    panel: Panel,
    title: str,
    description: str,
    size: Size,
    queries: Iterable[prometheus.Dataquery],
) -> Panel:
    """What every panel has: title, description, datasource, size, and queries A, B, C…"""
    width, height = size
    panel = panel.title(title).description(description).datasource(DATASOURCE)
    panel = panel.span(width).height(height)
    for ref, built in zip(ascii_uppercase, queries, strict=False):
        panel = panel.with_target(built.ref_id(ref))
    return panel


Axis = TypeVar("Axis", timeseries.Panel, bargauge.Panel)


def _axis(panel: Axis, min_value: float | None, max_value: float | None) -> Axis:
    """Pins the value axis (or the bars' range) where a bound is given."""
    if min_value is not None:
        panel = panel.min(min_value)
    if max_value is not None:
        panel = panel.max(max_value)
    return panel


def time_series(
    title: str,
    description: str,
    *queries: prometheus.Dataquery,
    size: Size,
    unit: str = "short",
    min_value: float | None = 0,
    max_value: float | None = None,
) -> timeseries.Panel:
    """Lines with a table legend of last and max.

    The y axis starts at ``min_value``: 0, or None to follow the data (e.g. accuracies
    close to a ``max_value`` of 1).
    """
    panel = (
        timeseries.Panel()
        .unit(unit)
        .line_width(2)
        .fill_opacity(10)
        .legend(
            common_builder.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(["lastNotNull", "max"])
        )
    )
    return _panel(_axis(panel, min_value, max_value), title, description, size, queries)


def stat_panel(
    title: str,
    description: str,
    *queries: prometheus.Dataquery,
    size: Size,
    unit: str = "short",
    text_mode: common.BigValueTextMode = common.BigValueTextMode.AUTO,
    colors: dashboard_builder.ThresholdsConfig | None = None,
    mappings: list[dashboard.ValueMapping] | None = None,
    decimals: float | None = None,
) -> stat.Panel:
    """Each series' last value on a coloured background (blue unless ``colors``)."""
    panel = (
        stat.Panel()
        .unit(unit)
        .text_mode(text_mode)
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.NONE)
        .reduce_options(_last_value())
        .thresholds(colors or thresholds((None, "blue")))
    )
    if mappings:
        panel = panel.mappings(mappings)
    if decimals is not None:
        panel = panel.decimals(decimals)
    return _panel(panel, title, description, size, queries)


def bar_gauge(
    title: str,
    description: str,
    built: prometheus.Dataquery,
    *,
    size: Size,
    unit: str = "short",
    max_value: float | None = None,
    colors: dashboard_builder.ThresholdsConfig | None = None,
) -> bargauge.Panel:
    """Horizontal bars from 0, one per series (e.g. per model family or feature)."""
    panel = (
        bargauge.Panel()
        .unit(unit)
        .orientation(common.VizOrientation.HORIZONTAL)
        .display_mode(common.BarGaugeDisplayMode.GRADIENT)
        .reduce_options(_last_value())
        .thresholds(colors or thresholds((None, "blue")))
    )
    return _panel(_axis(panel, 0, max_value), title, description, size, [built])


def table_panel(
    title: str,
    description: str,
    built: prometheus.Dataquery,
    *,
    size: Size,
    unit: str | None = None,
) -> table.Panel:
    """A table of an instant query's series and their labels (the Time column hidden)."""
    panel = table.Panel().with_transformation(
        dashboard.DataTransformerConfig(
            id_val="organize",
            options={"excludeByName": {"Time": True, "__name__": True}},
        )
    )
    if unit is not None:
        panel = panel.unit(unit)
    return _panel(panel, title, description, size, [built])


def pie(title: str, description: str, built: prometheus.Dataquery, *, size: Size) -> piechart.Panel:
    """A pie chart of each series' last value (e.g. the share of each predicted cultivar)."""
    panel = piechart.Panel().unit("short").reduce_options(_last_value())
    return _panel(panel, title, description, size, [built])


# Dashboards -----------------------------------------------------------------------------


def new_dashboard(
    uid: str,
    title: str,
    description: str,
    tags: list[str],
    rows: Mapping[str, Sequence[cogbuilder.Builder[dashboard.Panel]]],
    *,
    variables: Sequence[dashboard_builder.QueryVariable] = (),
) -> dashboard_builder.Dashboard:
    """A dashboard with the stack's defaults: last hour, 30 s refresh, UTC, read-only.

    Args:
        uid: The dashboard's fixed uid (also its file name).
        title: Its title.
        description: What it answers.
        tags: Tags besides ``wine-mlops``.
        rows: Row title -> the panels of that row, in order.
        variables: Dashboard variables (e.g. an experiment selector).
    """
    board = (
        dashboard_builder.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["wine-mlops", *tags])
        .time("now-1h", "now")
        .refresh("30s")
        .timezone("utc")
        .tooltip(dashboard.DashboardCursorSync.CROSSHAIR)
        .readonly()
    )
    for variable in variables:
        board = board.with_variable(variable)
    for row_title, panels in rows.items():
        board = board.with_row(dashboard_builder.Row(row_title))
        for panel in panels:
            board = board.with_panel(panel)
    return board
