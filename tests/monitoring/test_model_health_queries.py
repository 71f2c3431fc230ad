"""The "Model health" dashboard's queries, evaluated by Prometheus's own engine (promtool)
on series shaped like the stack's: two API workers exporting the same snapshot, an old
version still in the live accuracy, one alert firing. Each query is read from the committed
JSON, so what is checked is what Grafana will send."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tests.monitoring.panels import panel_queries, substitute

API = 'job="prediction-api", instance="prediction-api"'

#: (series, values) every worker of the API exports (``pid`` tells two workers apart).
WORKER_SERIES = [
    ('wine_api_model_info{%s, model_name="wine-classifier", model_version="3"}', "0x10"),
    ('wine_api_model_info{%s, model_name="wine-classifier", model_version="4"}', "1x10"),
    ('wine_api_live_accuracy{%s, model_version="3"}', "0.4x10"),
    ('wine_api_live_accuracy{%s, model_version="4"}', "0.93x10"),
    ('wine_api_live_labelled{%s, model_version="3"}', "150x10"),
    ('wine_api_live_labelled{%s, model_version="4"}', "50x10"),
    ('wine_api_feature_drift{%s, feature="proline"}', "0.31x10"),
    ('wine_api_feature_drift{%s, feature="hue"}', "0.05x10"),
    ("wine_api_drift_window_rows{%s}", "500x10"),
]

#: Series exported once (counters of the whole API, the exporter, Prometheus's ALERTS).
SERIES = [
    (f'wine_api_feedback_total{{{API}, outcome="correct"}}', "0+60x10"),
    (f'wine_api_feedback_total{{{API}, outcome="wrong"}}', "0+30x10"),
    (f"wine_api_prediction_log_rows_total{{{API}}}", "0+120x10"),
    (f'wine_api_prediction_log_dropped_total{{{API}, reason="queue_full"}}', "0x10"),
    (f'wine_api_prediction_log_dropped_total{{{API}, reason="db_error"}}', "0+30x10"),
    (
        'wine_champion_accuracy_floor_ratio{job="mlflow-exporter", instance="mlflow-exporter"}',
        "0.9x10",
    ),
    (
        'ALERTS{alertname="WineFeatureDrift", alertstate="firing", feature="proline", '
        'severity="warning", action="retrain"}',
        "1x10",
    ),
    (
        'ALERTS{alertname="WineApiHighLatencyP99", alertstate="pending", job="prediction-api", '
        'severity="warning"}',
        "1x10",
    ),
]

#: (panel title, query ref) -> the samples it must return at 5 minutes.
EXPECTED: dict[tuple[str, str], list[dict[str, Any]]] = {
    # one value per version (not per worker), the old version included, and the floor
    ("Live accuracy by version", "A"): [
        {"labels": '{model_version="3"}', "value": 0.4},
        {"labels": '{model_version="4"}', "value": 0.93},
    ],
    ("Live accuracy by version", "B"): [{"labels": "{}", "value": 0.9}],
    # only the version served now
    ("Live accuracy of the served version", "A"): [
        {"labels": '{model_version="4"}', "value": 0.93}
    ],
    ("Labels behind the live accuracy", "A"): [
        {"labels": '{model_version="3"}', "value": 150},
        {"labels": '{model_version="4"}', "value": 50},
    ],
    ("Feedback per second, correct and wrong", "A"): [
        {"labels": '{outcome="correct"}', "value": 1},
        {"labels": '{outcome="wrong"}', "value": 0.5},
    ],
    ("Drift per feature now (PSI)", "A"): [
        {"labels": '{feature="hue"}', "value": 0.05},
        {"labels": '{feature="proline"}', "value": 0.31},
    ],
    ("Drift window rows", "A"): [{"labels": "{}", "value": 500}],
    ("Prediction log rows written and dropped per second", "A"): [{"labels": "{}", "value": 2}],
    ("Prediction log rows written and dropped per second", "B"): [
        {"labels": '{reason="db_error"}', "value": 0.5},
        {"labels": '{reason="queue_full"}', "value": 0},
    ],
    # WineFeatureDrift firing (2), WineLiveAccuracyLow silent (0): another alert's
    # pending state does not count
    ("Retraining alerts", "A"): [{"labels": "{}", "value": 2}],
    ("Retraining alerts", "B"): [{"labels": "{}", "value": 0}],
    ("Retraining alerts (details)", "A"): [
        {
            "labels": 'ALERTS{alertname="WineFeatureDrift", alertstate="firing", '
            'feature="proline", severity="warning", action="retrain"}',
            "value": 1,
        }
    ],
}


def _promtool_test(queries: dict[tuple[str, str], str]) -> dict[str, Any]:
    input_series = [
        {"series": series % f'{API}, pid="{pid}"', "values": values}
        for series, values in WORKER_SERIES
        for pid in ("41", "42")
    ]
    input_series += [{"series": series, "values": values} for series, values in SERIES]
    return {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            {
                "name": "model health panels",
                "interval": "1m",
                "input_series": input_series,
                "promql_expr_test": [
                    {"expr": queries[key], "eval_time": "5m", "exp_samples": samples}
                    for key, samples in EXPECTED.items()
                ],
            }
        ],
    }


def _queries(change: Callable[[str], str] = lambda expr: expr) -> dict[tuple[str, str], str]:
    """The Model health dashboard's queries by (panel, ref id), each passed through ``change``."""
    return {
        (found.panel, found.ref_id): change(substitute(found.expr))
        for found in panel_queries()
        if found.dashboard == "wine-model-health"
    }


def _promtool_test_rules(
    promtool: str, tmp_path: Path, queries: dict[tuple[str, str], str]
) -> subprocess.CompletedProcess[str]:
    """``promtool test rules`` of :func:`_promtool_test` for ``queries``."""
    path = tmp_path / "model_health_test.yml"
    path.write_text(yaml.safe_dump(_promtool_test(queries), sort_keys=False))
    return subprocess.run(
        [promtool, "test", "rules", path.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_model_health_queries_return_what_the_panels_say(promtool: str, tmp_path: Path) -> None:
    queries = _queries()
    assert set(EXPECTED) <= set(queries)
    result = _promtool_test_rules(promtool, tmp_path, queries)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_wrong_expectation_fails(promtool: str, tmp_path: Path) -> None:
    """The check above would notice a query that counts each worker: sum instead of max."""
    result = _promtool_test_rules(
        promtool, tmp_path, _queries(lambda expr: expr.replace("max by", "sum by"))
    )
    assert result.returncode != 0
    assert "model_version" in result.stdout + result.stderr
