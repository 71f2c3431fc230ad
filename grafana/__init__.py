"""Grafana configuration of the stack; dashboards as code in ``dashboards_as_code``."""
