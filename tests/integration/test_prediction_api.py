"""The prediction API as a real process against a real MLflow server and the real trainer.

Covers the issue's end-to-end promises locally: not ready before training, every wine
predicted through the API matches the champion's own offline predictions, a better champion
is picked up without restart while requests keep succeeding, the browser form and the API
docs work (with no request leaving the API), and predictions survive the MLflow server going
away.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import mlflow
import pytest

from devstack import MlflowServer, Service, run_training, start_api, start_mlflow_server
from tests.prediction_api.browser import check_docs, check_form, check_form_warnings
from wine_mlops.features import CLASS_NAMES, FEATURE_NAMES, load_wine_frame
from wine_mlops.healthcheck import wait_until_healthy

pytestmark = pytest.mark.integration

BATCH = 50
DASH = "\N{EN DASH}"  # the form writes a range as "<min> <en dash> <max>"


def all_wines() -> list[dict[str, float]]:
    frame = load_wine_frame()
    return [
        {name: float(value) for name, value in zip(FEATURE_NAMES, row, strict=True)}
        for row in frame[list(FEATURE_NAMES)].itertuples(index=False)
    ]


def predict_all(url: str) -> list[dict[str, Any]]:
    """Every wine of the data set through ``POST /predict/batch``, in batches."""
    wines = all_wines()
    answers: list[dict[str, Any]] = []
    with httpx.Client(base_url=url, timeout=30) as client:
        for start in range(0, len(wines), BATCH):
            response = client.post("/predict/batch", json=wines[start : start + BATCH])
            assert response.status_code == 200, response.text
            answers.extend(response.json())
    return answers


def assert_matches_offline(answers: list[dict[str, Any]], server: str, model: str, version: str):
    """Compares the API's answers with the registered version's own predictions."""
    mlflow.set_tracking_uri(server)
    estimator = mlflow.sklearn.load_model(f"models:/{model}/{version}")
    features = load_wine_frame()[list(FEATURE_NAMES)]
    expected_ids = estimator.predict(features).tolist()
    expected_proba = estimator.predict_proba(features)
    assert len(answers) == len(expected_ids) == 178
    assert {a["model_version"] for a in answers} == {version}
    assert {a["model_name"] for a in answers} == {model}
    assert [a["class_id"] for a in answers] == expected_ids
    assert [a["class_name"] for a in answers] == [CLASS_NAMES[i] for i in expected_ids]
    for answer, row in zip(answers, expected_proba, strict=True):
        assert list(answer["probabilities"].values()) == pytest.approx(row.tolist(), abs=1e-5)


def train_ok(url: str, candidates: str, names: dict[str, str]) -> None:
    # no accuracy floor: the first champion is a DummyClassifier on purpose
    result = run_training(url, candidates=candidates, WINE_MIN_ACCURACY="0", **names)
    assert result.returncode == 0, result.stderr[-3000:]


@dataclass
class Stack:
    """A server, the API watching it, and what was seen along the way."""

    server: MlflowServer
    api: Service
    names: dict[str, str]
    before_training: dict[str, httpx.Response] = field(default_factory=dict)
    v1_answers: list[dict[str, Any]] = field(default_factory=list)

    @property
    def model(self) -> str:
        return self.names["WINE_MODEL_NAME"]


@pytest.fixture(scope="module")
def stack(mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The API started before any model exists, then a deliberately bad champion (v1)."""
    suffix = uuid.uuid4().hex[:8]
    names = {"WINE_EXPERIMENT_NAME": f"api-{suffix}", "WINE_MODEL_NAME": f"api-model-{suffix}"}
    api = start_api(
        mlflow_server.url,
        tmp_path_factory.mktemp("api"),
        wait_ready=False,
        WINE_MODEL_NAME=names["WINE_MODEL_NAME"],
        WINE_WATCH_INTERVAL_SECONDS="1",
    )
    try:
        state = Stack(mlflow_server, api, names)
        with httpx.Client(base_url=api.url, timeout=10) as client:
            state.before_training = {
                "healthz": client.get("/healthz"),
                "readyz": client.get("/readyz"),
                "predict": client.post("/predict", json=all_wines()[0]),
            }
        train_ok(mlflow_server.url, "DummyClassifier", names)  # v1: always the same class
        wait_until_healthy(f"{api.url}/readyz", timeout=60, process=api.process)
        state.v1_answers = predict_all(api.url)
        yield state
    finally:
        api.stop()


@dataclass
class SwapRecord:
    statuses: list[int]
    versions: list[str]
    pid_before: int
    pid_after: int


@pytest.fixture(scope="module")
def swap(stack: Stack) -> SwapRecord:
    """Trains a better model (promoted to champion) while a client keeps predicting."""
    statuses: list[int] = []
    versions: list[str] = []
    done = threading.Event()
    wine = all_wines()[0]

    def keep_predicting() -> None:
        with httpx.Client(base_url=stack.api.url, timeout=10) as client:
            while not done.is_set():
                response = client.post("/predict", json=wine)
                statuses.append(response.status_code)
                if response.status_code == 200:
                    versions.append(response.json()["model_version"])
                time.sleep(0.02)

    pid_before = stack.api.process.pid
    client = threading.Thread(target=keep_predicting)
    client.start()
    try:
        train_ok(stack.server.url, "LogisticRegression", stack.names)
        stack.api.wait_until(lambda: versions and versions[-1] == "2", "version 2 answering")
        time.sleep(0.5)  # a few more answers from the new version
    finally:
        done.set()
        client.join()
    assert stack.api.process.poll() is None
    return SwapRecord(statuses, versions, pid_before, stack.api.process.pid)


def test_the_api_is_live_but_not_ready_before_any_model_exists(stack: Stack) -> None:
    seen = stack.before_training
    assert seen["healthz"].status_code == 200
    assert seen["readyz"].status_code == 503
    assert seen["predict"].status_code == 503
    assert (
        f"no model loaded yet (models:/{stack.model}@champion)"
        in (seen["predict"].json()["message"])
    )


def test_every_wine_matches_the_first_champion_offline(stack: Stack) -> None:
    assert_matches_offline(stack.v1_answers, stack.server.url, stack.model, "1")


def test_a_better_champion_is_served_without_restart_and_without_failures(
    stack: Stack, swap: SwapRecord
) -> None:
    assert set(swap.statuses) == {200}
    assert swap.versions[0] == "1"
    assert swap.versions[-1] == "2"
    first_two = swap.versions.index("2")
    assert set(swap.versions[first_two:]) == {"2"}  # no flapping back
    assert swap.pid_before == swap.pid_after
    model = httpx.get(f"{stack.api.url}/model").json()
    assert model["model_version"] == "2"
    assert model["model_family"] == "LogisticRegression"
    assert model["metrics"]["accuracy"] >= 0.9
    run = mlflow.MlflowClient(stack.server.url).get_run(model["run_id"])
    assert model["metrics"] == run.data.metrics  # the version's run is the one source
    metrics = httpx.get(f"{stack.api.url}/metrics").text
    assert 'wine_api_model_loads_total{kind="reload",result="success"} 1.0' in metrics
    assert f'model_name="{stack.model}",model_version="2"' in metrics


def test_every_wine_matches_the_new_champion_offline(stack: Stack, swap: SwapRecord) -> None:
    assert_matches_offline(predict_all(stack.api.url), stack.server.url, stack.model, "2")


def test_the_legacy_query_answers_like_the_json_api(stack: Stack, swap: SwapRecord) -> None:
    wine = all_wines()[130]
    query = {f"feature_{i}": str(wine[n]) for i, n in enumerate(FEATURE_NAMES, start=1)}
    legacy = httpx.get(f"{stack.api.url}/predict/", params=query)
    assert legacy.status_code == 200
    assert legacy.text == str(httpx.post(f"{stack.api.url}/predict", json=wine).json()["class_id"])


def test_the_browser_form_predicts_a_cultivar_and_explains_bad_input(
    stack: Stack, swap: SwapRecord, tmp_path: Path
) -> None:
    shot = tmp_path / "form.png"
    seen = check_form(stack.api.url, sample_class_id=0, screenshot=shot)
    assert seen.cultivar == "Cultivar 1"
    assert [label for label, _ in seen.bars] == list(CLASS_NAMES)
    assert all(value.endswith(" %") for _, value in seen.bars)
    assert "alcohol: must not be negative, got -5" in seen.invalid_message
    assert seen.external_requests == []  # everything is served by the API itself
    assert shot.read_bytes().startswith(b"\x89PNG")


def proline_warnings(url: str) -> float:
    """The API's count of warnings about a proline above the training range so far."""
    line = 'wine_api_input_out_of_range_total{feature="proline",side="above"} '
    metrics = httpx.get(f"{url}/metrics").text
    return float(next(row for row in metrics.splitlines() if row.startswith(line)).split()[-1])


def test_answers_and_the_form_warn_by_the_ranges_training_logged_with_the_model(
    stack: Stack, swap: SwapRecord, tmp_path: Path
) -> None:
    # v2 was trained on 133 of the 178 wines: its highest proline is 1515 mg/L, while
    # scikit-learn's copy of the data reaches 1680. Alcohol 0.132 is a unit mix-up (% vol).
    wine = {**all_wines()[0], "alcohol": 0.132, "proline": 1600.0}
    counted = [proline_warnings(stack.api.url)]
    answer = httpx.post(f"{stack.api.url}/predict", json=wine).json()
    counted.append(proline_warnings(stack.api.url))
    assert [(w["feature"], w["training_min"], w["training_max"]) for w in answer["warnings"]] == [
        ("alcohol", 11.03, 14.83),
        ("proline", 278.0, 1515.0),
    ]
    assert answer["warnings"][0]["message"] == (
        "alcohol 0.132 is outside the training range 11.03 to 14.83"
    )
    ranges = httpx.get(f"{stack.api.url}/model").json()["training_ranges"]
    assert ranges["proline"] == {"min": 278.0, "max": 1515.0}
    assert counted[1] == counted[0] + 1

    shot = tmp_path / "warnings.png"
    seen = check_form_warnings(
        stack.api.url, {"alcohol": "0.132", "proline": "1600"}, screenshot=shot
    )
    assert seen.field_warnings == {
        "alcohol": f"⚠ 0.132 is outside the training range 11.03 {DASH} 14.83",
        "proline": f"⚠ 1600 is outside the training range 278 {DASH} 1515",
    }
    assert seen.described_by == {
        "alcohol": "alcohol-warning alcohol-range",
        "proline": "proline-warning proline-range",
    }
    # the range under each field is the served version's own, as its warnings are
    assert seen.ranges == {
        "alcohol": f"training range 11.03 {DASH} 14.83",
        "proline": f"training range 278 {DASH} 1515",
    }
    assert seen.summary.startswith(
        "Caution: 2 values are outside the range the model was trained on (Alcohol, Proline)."
    )
    # the report: "Cultivar 2, 100.0 %", which wrapped onto two lines at 1280 px
    assert seen.cultivar == "Cultivar 2"
    assert ("Cultivar 2", "100.0 %") in seen.bars
    assert seen.value_lines == [1, 1, 1]
    assert seen.after_edit == {}  # a changed value is no longer the one warned about
    assert shot.read_bytes().startswith(b"\x89PNG")


def test_the_api_docs_render_in_chromium_without_leaving_the_api(
    stack: Stack, tmp_path: Path
) -> None:
    seen = check_docs(stack.api.url, screenshots=tmp_path)
    # Every request of both pages went to the API itself; none was refused on the way out.
    assert seen.blocked == []
    assert all(url.startswith(f"{stack.api.url}/") for url in seen.requests), seen.requests
    paths = {url.removeprefix(stack.api.url) for url in seen.requests}
    assert {
        "/docs",
        "/docs-assets/swagger-ui-bundle.js",
        "/docs-assets/swagger-ui.css",
        "/redoc",
        "/docs-assets/redoc.standalone.js",
        "/openapi.json",
    } <= paths
    # ReDoc's bundle links its maker's logo from a CDN: the pages' policy stops it in the
    # browser, and nothing else is refused.
    assert all("cdn.redoc.ly/redoc/logo-mini.svg" in e for e in seen.console_errors), (
        seen.console_errors
    )
    # Swagger UI: the operations with their readable ids, under the described tags.
    assert seen.operation_ids == [
        "predict",
        "predict_batch",
        "predict_legacy",
        "feedback",
        "feedback_batch",
        "model",
        "features",
        "healthz",
        "readyz",
        "prometheus_metrics",
    ]
    for text in (
        "Wine classifier API",
        "/predict/batch",
        "Classify one wine",
        "Classify wines with the served model",
        "Liveness: the process answers",
    ):
        assert text in seen.swagger_text
    # ReDoc: the same document, rendered.
    for text in ("Wine classifier API", "Classify one wine", "Prometheus metrics"):
        assert text in seen.redoc_text
    assert (tmp_path / "docs.png").read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "redoc.png").read_bytes().startswith(b"\x89PNG")


@pytest.fixture(scope="module")
def lone_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A private MLflow server (SQLite) that this module may stop, with a trained champion."""
    workdir = tmp_path_factory.mktemp("mlflow-outage")
    server = start_mlflow_server(
        workdir, {"MLFLOW_BACKEND_STORE_URI": f"sqlite:///{workdir / 'mlflow.db'}"}
    )
    names = {"WINE_EXPERIMENT_NAME": "outage", "WINE_MODEL_NAME": "outage-model"}
    api: Service | None = None
    try:
        train_ok(server.url, "LogisticRegression", names)
        api = start_api(
            server.url,
            workdir,
            WINE_MODEL_NAME=names["WINE_MODEL_NAME"],
            WINE_WATCH_INTERVAL_SECONDS="1",
        )
        yield Stack(server, api, names)
    finally:
        if api is not None:
            api.stop()
        server.stop()


def test_predictions_keep_working_when_mlflow_goes_away(lone_stack: Stack) -> None:
    lone_stack.server.stop()
    api = lone_stack.api
    api.wait_until(lambda: "registry look-up failed" in api.log(), "a failed look-up logged")
    answers = predict_all(lone_stack.api.url)
    assert len(answers) == 178
    assert {a["model_version"] for a in answers} == {"1"}
    assert httpx.get(f"{lone_stack.api.url}/readyz").status_code == 200
    assert httpx.get(f"{lone_stack.api.url}/model").json()["model_version"] == "1"
    metrics = httpx.get(f"{lone_stack.api.url}/metrics").text
    failures = next(
        line
        for line in metrics.splitlines()
        if line.startswith("wine_api_registry_check_failures_total")
    )
    assert float(failures.split()[-1]) >= 1


# --- several workers (WINE_API_WORKERS=2): each answers, each swaps, /metrics adds them up ---

WORKERS = 2
WATCH_SECONDS = 1.0
#: Beyond the watch interval: a look-up, the download and the load of the new version.
SWAP_MARGIN_SECONDS = 20.0
#: gunicorn's graceful timeout (9 s) inside compose's 10 s stop budget.
STOP_BUDGET_SECONDS = 10.0


def scrape(url: str) -> list[tuple[str, dict[str, str], float]]:
    """``GET /metrics`` on a fresh connection (any worker may answer), parsed."""
    from prometheus_client.parser import text_string_to_metric_families

    response = httpx.get(f"{url}/metrics", timeout=10)
    assert response.status_code == 200
    return [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    ]


def total(samples: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include ``labels``."""
    return sum(
        value for found, have, value in samples if found == name and labels.items() <= have.items()
    )


def served_by_pid(url: str) -> dict[int, set[str]]:
    """The versions each live worker serves (``wine_api_model_info`` at 1, by ``pid``)."""
    served: dict[int, set[str]] = {}
    for name, labels, value in scrape(url):
        if name == "wine_api_model_info":
            versions = served.setdefault(int(labels["pid"]), set())
            if value == 1:
                versions.add(labels["model_version"])
    return served


def parent_of(pid: int) -> int | None:
    """A process's parent pid, or None when it is gone (or a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    state, ppid = stat.rsplit(")", 1)[1].split()[:2]
    return None if state == "Z" else int(ppid)


def fresh_predictions(url: str, count: int) -> list[httpx.Response]:
    """``count`` predictions, each on a new connection (so any worker may answer)."""
    wine = all_wines()[0]
    return [httpx.post(f"{url}/predict", json=wine, timeout=10) for _ in range(count)]


@pytest.fixture(scope="module")
def workers_stack(
    mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """A trained champion (v1) served by an API with two worker processes."""
    suffix = uuid.uuid4().hex[:8]
    names = {"WINE_EXPERIMENT_NAME": f"mw-{suffix}", "WINE_MODEL_NAME": f"mw-model-{suffix}"}
    train_ok(mlflow_server.url, "DummyClassifier", names)
    api = start_api(
        mlflow_server.url,
        tmp_path_factory.mktemp("api-workers"),
        workers=WORKERS,
        WINE_MODEL_NAME=names["WINE_MODEL_NAME"],
        WINE_WATCH_INTERVAL_SECONDS=str(WATCH_SECONDS),
    )
    try:
        api.wait_until(
            lambda: (
                len(served_by_pid(api.url)) == WORKERS
                and all(v == {"1"} for v in served_by_pid(api.url).values())
            ),
            "both workers serving version 1",
        )
        yield Stack(mlflow_server, api, names)
    finally:
        api.stop()


def test_each_of_two_workers_loads_the_model_and_answers_alone(workers_stack: Stack) -> None:
    api = workers_stack.api
    served = served_by_pid(api.url)
    assert len(served) == WORKERS
    assert all(parent_of(pid) == api.process.pid for pid in served)  # the master's workers
    samples = scrape(api.url)
    assert total(samples, "wine_api_model_loaded") == 1  # every worker has a model
    assert {
        labels["pid"] for name, labels, _ in samples if name == "process_cpu_seconds_total"
    } == {str(pid) for pid in served}
    # With one worker stopped, the other answers every new connection, and the other way round.
    for stopped in served:
        os.kill(stopped, signal.SIGSTOP)
        try:
            answers = fresh_predictions(api.url, 10)
        finally:
            os.kill(stopped, signal.SIGCONT)
        assert [a.status_code for a in answers] == [200] * 10
        assert {a.json()["model_version"] for a in answers} == {"1"}


def test_metrics_count_every_workers_answers_whichever_worker_is_scraped(
    workers_stack: Stack,
) -> None:
    url = workers_stack.api.url
    route = {"route": "/predict", "method": "POST", "status": "200"}
    before = scrape(url)
    answers = fresh_predictions(url, 25)
    assert [a.status_code for a in answers] == [200] * 25
    for _ in range(6):  # scrapes on fresh connections: each worker answers some
        after = scrape(url)
        assert (
            total(after, "wine_api_predictions_total") - total(before, "wine_api_predictions_total")
            == 25
        )
        assert (
            total(after, "wine_api_requests_total", **route)
            - total(before, "wine_api_requests_total", **route)
            == 25
        )
        assert total(after, "wine_api_requests_in_progress") == 0
        assert not [name for name, _, _ in after if name.endswith("_created")]


def test_a_killed_worker_is_replaced_by_one_that_loads_the_model(workers_stack: Stack) -> None:
    api = workers_stack.api
    old = served_by_pid(api.url)
    predicted = total(scrape(api.url), "wine_api_predictions_total")
    victim = min(old)
    os.kill(victim, signal.SIGKILL)
    api.wait_until(
        lambda: (
            (served := served_by_pid(api.url)).keys() != old.keys()
            and len(served) == WORKERS
            and all(v == {"1"} for v in served.values())
        ),
        "a new worker serving version 1",
        timeout=60,
    )
    samples = scrape(api.url)
    pids = {labels.get("pid") for _, labels, _ in samples} - {None}
    assert str(victim) not in pids  # the dead worker's live series are gone
    assert total(samples, "wine_api_model_loaded") == 1
    assert total(samples, "wine_api_predictions_total") == predicted  # its counts stay
    answers = fresh_predictions(api.url, 10)
    assert [a.status_code for a in answers] == [200] * 10
    assert api.process.poll() is None


def test_every_worker_serves_a_new_champion_within_the_watch_interval(
    workers_stack: Stack,
) -> None:
    api = workers_stack.api
    train_ok(workers_stack.server.url, "LogisticRegression", workers_stack.names)  # v2
    moved = time.monotonic()
    api.wait_until(
        lambda: all(v == {"2"} for v in served_by_pid(api.url).values()),
        "every worker serving version 2",
        timeout=WATCH_SECONDS + SWAP_MARGIN_SECONDS,
    )
    assert time.monotonic() - moved < WATCH_SECONDS + SWAP_MARGIN_SECONDS
    # no worker left on version 1: new connections, repeatedly, over several watch intervals
    seen: list[str] = []
    for _ in range(3):
        seen += [a.json()["model_version"] for a in fresh_predictions(api.url, 20)]
        time.sleep(WATCH_SECONDS)
    assert set(seen) == {"2"}
    served = served_by_pid(api.url)
    assert len(served) == WORKERS
    assert all(v == {"2"} for v in served.values())


def test_sigterm_stops_the_master_and_every_worker_in_time(workers_stack: Stack) -> None:
    api = workers_stack.api
    workers = list(served_by_pid(api.url))
    assert len(workers) == WORKERS
    started = time.monotonic()
    api.process.send_signal(signal.SIGTERM)
    code = api.process.wait(timeout=STOP_BUDGET_SECONDS + 5)
    took = time.monotonic() - started
    assert code == 0
    assert took < STOP_BUDGET_SECONDS
    assert [pid for pid in workers if parent_of(pid) is not None] == []  # no orphans
    assert "Shutting down: Master" in api.log()
