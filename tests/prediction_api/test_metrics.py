"""The API's own Prometheus metrics, read back as a scraper would."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from wine_mlops.features import FEATURE_NAMES


def scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``GET /metrics`` parsed: (sample name, sorted labels) → value."""
    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }


def test_requests_are_counted_by_route_template_method_and_status(
    client: TestClient, sample: dict[str, float]
) -> None:
    for _ in range(3):
        client.post("/predict", json=sample)
    client.post("/predict", json={"alcohol": -1})
    client.get("/no-such-page")
    client.get("/static/app.js")
    samples = scrape(client)
    route = (("method", "POST"), ("route", "/predict"))
    assert samples[("wine_api_requests_total", (*route, ("status", "200")))] == 3
    assert samples[("wine_api_requests_total", (*route, ("status", "422")))] == 1
    unmatched = (("method", "GET"), ("route", "<unmatched>"), ("status", "404"))
    assert samples[("wine_api_requests_total", unmatched)] == 1
    static = (("method", "GET"), ("route", "/static"), ("status", "200"))
    assert samples[("wine_api_requests_total", static)] == 1
    count = ("wine_api_request_duration_seconds_count", (*route, ("status", "200")))
    assert samples[count] == 3
    buckets = {
        labels[0][1]
        for (name, labels) in samples
        if name == "wine_api_request_duration_seconds_bucket"
    }
    assert {"0.001", "0.005"} <= buckets  # 1 ms and 5 ms fall in different buckets


def test_predictions_are_counted_by_class_and_version(client: TestClient, wine) -> None:
    rows = [{n: float(wine[n].iloc[i]) for n in FEATURE_NAMES} for i in (0, 1, 100)]
    assert client.post("/predict/batch", json=rows).status_code == 200
    samples = scrape(client)
    by_class = {
        dict(labels)["class_name"]: value
        for (name, labels), value in samples.items()
        if name == "wine_api_predictions_total" and dict(labels)["model_version"] == "1"
    }
    assert by_class == {"Cultivar 1": 2, "Cultivar 2": 1}


def test_the_served_model_and_its_load_are_exported(client: TestClient) -> None:
    samples = scrape(client)
    info = [labels for (name, labels) in samples if name == "wine_api_model_info"]
    assert info == [
        (
            ("alias", "champion"),
            ("model_name", "wine-classifier"),
            ("model_version", "1"),
            ("run_id", "run-1"),
        )
    ]
    assert samples[("wine_api_model_loaded", ())] == 1
    assert (
        samples[("wine_api_model_loads_total", (("kind", "initial"), ("result", "success")))] == 1
    )
    assert samples[("wine_api_model_loads_total", (("kind", "reload"), ("result", "failure")))] == 0
    assert samples[("wine_api_model_last_load_timestamp_seconds", ())] > 1.6e9


def test_process_and_python_metrics_are_exported_without_created_series(
    client: TestClient,
) -> None:
    text = client.get("/metrics").text
    samples = scrape(client)
    names = {found for (found, _) in samples}
    assert samples[("process_resident_memory_bytes", ())] > 1e6
    assert samples[("process_cpu_seconds_total", ())] > 0
    assert "process_open_fds" in names
    assert "python_info" in names
    assert "python_gc_objects_collected_total" in names
    assert not [found for found in names if found.endswith("_created")]
    assert "_created" not in text


def test_requests_in_progress_count_requests_being_answered(client: TestClient) -> None:
    """A request held open by the app shows in the gauge; once answered, it is gone."""
    app = client.app
    assert isinstance(app, FastAPI)
    entered, release = threading.Event(), threading.Event()

    @app.get("/held-open")
    def held_open() -> dict[str, bool]:  # a sync route: runs in a worker thread
        entered.set()
        return {"released": release.wait(timeout=30)}

    gauge = ("wine_api_requests_in_progress", ())
    assert scrape(client)[gauge] == 0  # the scrape itself is not counted
    with ThreadPoolExecutor(max_workers=1) as pool:
        answer = pool.submit(client.get, "/held-open")
        assert entered.wait(timeout=30)
        assert scrape(client)[gauge] == 1
        release.set()
        assert answer.result(timeout=30).json() == {"released": True}
    samples = scrape(client)
    assert samples[gauge] == 0
    route = (("method", "GET"), ("route", "/held-open"), ("status", "200"))
    assert samples[("wine_api_requests_total", route)] == 1


def test_two_apps_do_not_share_counters(make_client, client: TestClient, sample) -> None:
    client.post("/predict", json=sample)
    other = make_client()
    route = (("method", "POST"), ("route", "/predict"), ("status", "200"))
    assert ("wine_api_requests_total", route) not in scrape(other)
