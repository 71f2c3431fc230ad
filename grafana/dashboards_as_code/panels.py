"""Small factories over the foundation SDK so that every panel looks and queries alike.

Every query goes to the provisioned Prometheus datasource (uid ``prometheus``); panels are
laid out by the SDK's dashboard builder from their ``span`` (of 24 columns) and ``height``.
"""

from __future__ import annotations

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
from grafana_foundation_sdk.models import common, dashboard
from grafana_foundation_sdk.models import prometheus as prometheus_model

#: The datasource every panel uses: provisioned with this fixed uid.
DATASOURCE = dashboard.DataSourceRef(type_val="prometheus", uid="prometheus")

#: Selector of the API's user traffic: Prometheus scrapes and container probes left out.
API_TRAFFIC = 'job="prediction-api", route!~"/metrics|/healthz|/readyz"'


def query(
    expr: str, legend: str = "", *, instant: bool = False, ref: str = "A"
) -> prometheus.Dataquery:
    """A PromQL query on the provisioned Prometheus.

    Args:
        expr: The PromQL expression (Grafana variables such as ``$__rate_interval`` allowed).
        legend: The legend format, e.g. ``{{status}}``.
        instant: An instant query (tables, stats of the current value) instead of a range.
        ref: The query's ref id within its panel.
    """
    built = prometheus.Dataquery().expr(expr).ref_id(ref).datasource(DATASOURCE)
    if legend:
        built = built.legend_format(legend)
    if instant:
        built = built.instant().format(prometheus_model.PromQueryFormat.TABLE)
    else:
        built = built.range()
    return built


def thresholds(*steps: tuple[float | None, str]) -> dashboard_builder.ThresholdsConfig:
    """Absolute thresholds, e.g. ``(None, "red"), (0.9, "green")``."""
    return (
        dashboard_builder.ThresholdsConfig()
        .mode(dashboard.ThresholdsMode.ABSOLUTE)
        .steps([dashboard.Threshold(value=value, color=color) for value, color in steps])
    )


def value_map(mapping: dict[str, tuple[str, str]]) -> list[dashboard.ValueMapping]:
    """Value-to-text mappings: ``{"1": ("UP", "green")}``."""
    return [
        dashboard.ValueMap(
            options={
                value: dashboard.ValueMappingResult(text=text, color=color, index=index)
                for index, (value, (text, color)) in enumerate(mapping.items())
            }
        )
    ]


def time_series(
    title: str,
    description: str,
    *queries: prometheus.Dataquery,
    unit: str = "short",
    min_value: float | None = None,
    max_value: float | None = None,
) -> timeseries.Panel:
    """A time series panel with a table legend showing last and max."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
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
    if min_value is not None:
        panel = panel.min(min_value)
    if max_value is not None:
        panel = panel.max(max_value)
    for built in queries:
        panel = panel.with_target(built)
    return panel


def stat_panel(
    title: str,
    description: str,
    *queries: prometheus.Dataquery,
    unit: str = "short",
    text_mode: common.BigValueTextMode = common.BigValueTextMode.AUTO,
    colors: dashboard_builder.ThresholdsConfig | None = None,
    mappings: list[dashboard.ValueMapping] | None = None,
    decimals: float | None = None,
) -> stat.Panel:
    """A stat panel showing each series' last value."""
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .text_mode(text_mode)
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.NONE)
        .reduce_options(common_builder.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .thresholds(colors or thresholds((None, "blue")))
    )
    if mappings:
        panel = panel.mappings(mappings)
    if decimals is not None:
        panel = panel.decimals(decimals)
    for built in queries:
        panel = panel.with_target(built)
    return panel


def bar_gauge(
    title: str,
    description: str,
    built: prometheus.Dataquery,
    *,
    unit: str = "short",
    min_value: float = 0,
    max_value: float | None = None,
    colors: dashboard_builder.ThresholdsConfig | None = None,
) -> bargauge.Panel:
    """A horizontal bar gauge, one bar per series (e.g. per model family or feature)."""
    panel = (
        bargauge.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .min(min_value)
        .orientation(common.VizOrientation.HORIZONTAL)
        .display_mode(common.BarGaugeDisplayMode.GRADIENT)
        .reduce_options(common_builder.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .thresholds(colors or thresholds((None, "blue")))
        .with_target(built)
    )
    if max_value is not None:
        panel = panel.max(max_value)
    return panel


def table_panel(title: str, description: str, built: prometheus.Dataquery) -> table.Panel:
    """A table of an instant query's series and their labels (the Time column hidden)."""
    return (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(built)
        .with_transformation(
            dashboard.DataTransformerConfig(
                id_val="organize",
                options={"excludeByName": {"Time": True, "__name__": True}},
            )
        )
    )


def pie(title: str, description: str, built: prometheus.Dataquery) -> piechart.Panel:
    """A pie chart (e.g. the share of each predicted cultivar)."""
    return (
        piechart.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit("short")
        .reduce_options(common_builder.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .with_target(built)
    )


def new_dashboard(
    uid: str, title: str, description: str, tags: list[str]
) -> dashboard_builder.Dashboard:
    """A dashboard with the stack's defaults: last hour, 30 s refresh, UTC, read-only."""
    return (
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
