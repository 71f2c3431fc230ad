"""The MLflow UI in Chromium: the ``wine-classifier`` experiment opens on its training runs.

A real ``mlflow server`` (basic-auth, SQLite) started by the stack's launcher, one short real
training session (``LogisticRegression`` only), then the UI in Debian's Chromium as the admin.
Assertions are on visible text; each page is saved as a PNG under the test's tmp folder.

MLflow 3.17's UI does not choose an experiment's first page from the experiment's
``mlflow.experimentKind`` tag (which the launcher and the training still set, for the
experiment list and older UIs): its "GenAI | Model training" switch does, remembered by the
browser, or ``?workflowType=`` in the link. A browser that never chose opens every
experiment on the GenAI overview ("Traces 0, No data"). So README's experiment link carries
``?workflowType=machine_learning``, and README and ``make urls`` say which switch to press.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from devstack import PASSWORDS, MlflowServer, run_training, start_mlflow_server
from tests.prediction_api.browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.integration

EXPERIMENT = "wine-classifier"
#: What MLflow's GenAI overview shows for an experiment without traces.
GENAI_EMPTY = "No data available for the selected time range"
#: Generous: the first page of a cold MLflow UI loads several MB of scripts.
WAIT_MS = 60_000


@dataclass(frozen=True)
class Trained:
    """A server with one finished training session in ``wine-classifier``."""

    server: MlflowServer
    experiment_id: str
    session_run: str
    candidate_runs: list[str]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    workdir = tmp_path_factory.mktemp("mlflow-ui")
    server = start_mlflow_server(
        workdir, {"MLFLOW_BACKEND_STORE_URI": f"sqlite:///{workdir / 'mlflow.db'}"}
    )
    try:
        done = run_training(server.url, candidates="LogisticRegression")
        assert done.returncode == 0, done.stdout + done.stderr
        client = MlflowClient(server.url)
        experiment = client.get_experiment_by_name(EXPERIMENT)
        assert experiment is not None
        runs = client.search_runs([experiment.experiment_id])
        session = [r.info.run_name for r in runs if "mlflow.parentRunId" not in r.data.tags]
        candidates = [r.info.run_name for r in runs if "mlflow.parentRunId" in r.data.tags]
        assert len(session) == 1
        assert candidates == ["LogisticRegression"]
        yield Trained(server, experiment.experiment_id, str(session[0]), candidates)
    finally:
        server.stop()


def _browse(trained: Trained, path: str, screenshot: Path, *, switch: bool = False) -> str:
    """Opens ``path`` of the UI in a fresh browser (nothing remembered) as the admin.

    Args:
        trained: The server.
        path: Where to go first, e.g. ``/#/experiments/1``.
        screenshot: Where to save the page the experiment opened on.
        switch: Press "Model training" (the UI's workflow switch) first, then click the
            experiment in the experiment list, as a user does.

    Returns:
        The visible text of the page once the experiment's page has rendered.
    """
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                http_credentials={"username": "admin", "password": PASSWORDS["admin"]},
                viewport={"width": 1280, "height": 900},
            )
            page = context.new_page()
            page.set_default_timeout(WAIT_MS)
            page.goto(f"{trained.server.url}{path}")
            if switch:
                page.get_by_text("Model training", exact=True).first.click()
                page.get_by_role("link", name=EXPERIMENT, exact=True).first.click()
            # The experiment's page has rendered when its own description is on screen.
            expect(page.get_by_text("Wine cultivar classifier training").first).to_be_visible()
            page.wait_for_url(re.compile(rf"#/experiments/{trained.experiment_id}\b"))
            # Either view finishes loading: the runs table, or the GenAI overview's charts.
            expect(
                page.get_by_text(trained.session_run).or_(page.get_by_text(GENAI_EMPTY)).first
            ).to_be_visible()
            page.screenshot(path=str(screenshot))
            return str(page.inner_text("body"))
        finally:
            browser.close()


def _assert_training_runs(trained: Trained, text: str) -> None:
    assert trained.session_run in text, text[:2000]
    assert "Run Name" in text, "the runs table's header"
    runs = 1 + len(trained.candidate_runs)  # the candidates are nested under the session
    assert re.search(rf"\b{runs}\s+matching runs", text), text[-500:]
    assert GENAI_EMPTY not in text, "opened on the GenAI overview"
    assert "Tokens per Trace" not in text


def test_the_experiment_link_opens_on_the_training_runs(trained: Trained, tmp_path: Path) -> None:
    text = _browse(
        trained,
        f"/#/experiments/{trained.experiment_id}?workflowType=machine_learning",
        tmp_path / "experiment.png",
    )
    _assert_training_runs(trained, text)


def test_model_training_in_the_switch_opens_the_experiment_on_its_runs(
    trained: Trained, tmp_path: Path
) -> None:
    text = _browse(trained, "/#/experiments", tmp_path / "switched.png", switch=True)
    _assert_training_runs(trained, text)


def test_a_browser_that_never_chose_opens_the_genai_overview(
    trained: Trained, tmp_path: Path
) -> None:
    """Why the links carry ``workflowType``: without it MLflow 3.17 ignores the kind tag.

    When an MLflow upgrade opens the runs here, plain experiment links are enough again.
    """
    text = _browse(trained, f"/#/experiments/{trained.experiment_id}", tmp_path / "plain.png")
    assert GENAI_EMPTY in text
    assert trained.session_run not in text
