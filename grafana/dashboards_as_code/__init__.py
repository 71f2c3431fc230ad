"""Grafana dashboards of the wine MLOps stack, generated as code.

Each dashboard is built with Grafana's official ``grafana-foundation-sdk`` and written as
JSON to ``grafana/dashboards/`` (provisioned into Grafana from there). Regenerate with::

    .venv/bin/python -m grafana.dashboards_as_code      # or: make dashboards

Every panel queries the provisioned Prometheus datasource by its fixed uid ``prometheus``.
"""

from grafana.dashboards_as_code.generate import DASHBOARDS, OUTPUT_DIR, render_all, write_all

__all__ = ["DASHBOARDS", "OUTPUT_DIR", "render_all", "write_all"]
