"""Prometheus configuration and rules: valid, and every alert unit-tested both ways."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.monitoring.conftest import PROMETHEUS_DIR

RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
TEST_FILES = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))


def _run(*args: str, cwd: Path = PROMETHEUS_DIR) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)


def _alert_rules() -> list[dict[str, Any]]:
    return [
        rule
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def test_prometheus_config_is_valid_and_loads_the_rules(promtool: str) -> None:
    result = _run(promtool, "check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in result.stdout


def test_scrape_jobs_name_the_stack_services() -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = {name: job["static_configs"][0]["targets"] for name, job in jobs.items()}
    assert targets == {
        "prometheus": ["localhost:9090"],
        "prediction-api": ["prediction-api:7654"],
        "mlflow-exporter": ["mlflow-exporter:8000"],
        "mlflow-server": ["mlflow-server:5001"],  # the launcher's ops port (no MLflow login)
        "model-training-webhook": ["model-training-webhook:8090"],
        "alertmanager": ["alertmanager:9093"],
    }
    assert {job["metrics_path"] for job in jobs.values() if "metrics_path" in job} == {"/metrics"}


def test_alerts_are_sent_to_the_stack_alertmanager() -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    (manager,) = config["alerting"]["alertmanagers"]
    assert manager["static_configs"] == [{"targets": ["alertmanager:9093"]}]


def test_rules_are_valid(promtool: str) -> None:
    result = _run(promtool, "check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass(promtool: str) -> None:
    assert TEST_FILES, "no promtool tests in prometheus/tests/"
    result = _run(promtool, "test", "rules", *map(str, TEST_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_tells_the_operator_what_to_do() -> None:
    rules = _alert_rules()
    assert len(rules) >= 8
    for rule in rules:
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert set(rule["annotations"]) >= {"summary", "description"}, rule["alert"]
        assert len(rule["annotations"]["description"]) > 120, rule["alert"]


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    cases: dict[str, set[bool]] = {}
    for path in TEST_FILES:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                cases.setdefault(check["alertname"], set()).add(bool(check.get("exp_alerts")))
    for rule in _alert_rules():
        assert cases.get(rule["alert"]) == {True, False}, (
            f"{rule['alert']} needs a promtool test where it fires and one where it does not"
        )


@pytest.mark.parametrize("alert", [rule["alert"] for rule in _alert_rules()])
def test_the_unit_tests_catch_a_broken_alert(promtool: str, tmp_path: Path, alert: str) -> None:
    """Negating one alert's expression must make the promtool tests fail."""
    shutil.copytree(PROMETHEUS_DIR / "tests", tmp_path / "tests")
    (tmp_path / "rules").mkdir()
    for path in RULE_FILES:
        document = yaml.safe_load(path.read_text())
        for group in document["groups"]:
            for rule in group["rules"]:
                if rule.get("alert") == alert:
                    rule["expr"] = f"absent({rule['expr']})"  # fires exactly when it should not
        (tmp_path / "rules" / path.name).write_text(yaml.safe_dump(document, sort_keys=False))
    result = _run(promtool, "test", "rules", *(f"tests/{p.name}" for p in TEST_FILES), cwd=tmp_path)
    assert result.returncode != 0, f"breaking {alert} went unnoticed"
    assert f"alertname: {alert}" in result.stdout + result.stderr
