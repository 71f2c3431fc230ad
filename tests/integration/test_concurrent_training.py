"""Two training sessions at once, forced to meet at their critical points, on a real MLflow.

The sessions run in two threads of this process against a real tracking server (SQLite and
PostgreSQL). Events, not luck, decide the interleaving: the test wraps the session's own
steps so that one session is inside its promotion (champion read and scored) while the
other tries to promote, and so that both look the experiment up before either creates it.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from devstack import MlflowServer
from model_training import session
from model_training.data import load_dataset
from model_training.promotion_lock import lock_name
from model_training.session import SessionResult, run_session
from model_training.settings import TrainingSettings

pytestmark = pytest.mark.integration

#: Test accuracy on the default split: LogisticRegression 1.00, DummyClassifier 0.40.
GOOD, BAD = "LogisticRegression", "DummyClassifier"

#: Only a guard against a hang if the code under test deadlocks; never a measured time.
HANG_GUARD_SECONDS = 300


def _settings(server: MlflowServer, experiment: str, model: str, family: str) -> TrainingSettings:
    # min_accuracy=0: the baseline may become champion when it comes first
    return TrainingSettings(
        tracking_uri=server.url,
        experiment_name=experiment,
        model_name=model,
        candidates=(family,),
        cv_folds=2,
        min_accuracy=0,
    )


def _run_sessions(
    sessions: dict[str, TrainingSettings], on_done: Callable[[str], None] = lambda _: None
) -> dict[str, SessionResult]:
    """Runs one session per thread (named by the dict's keys); raises the first failure."""
    dataset = load_dataset()
    next(iter(sessions.values())).use_tracking_uri()  # as the trainer's entry point does
    outcomes: dict[str, SessionResult | BaseException] = {}

    def target(name: str, settings: TrainingSettings) -> None:
        try:
            outcomes[name] = run_session(dataset, settings)
        except BaseException as exc:  # reported below, in the test's thread
            outcomes[name] = exc
        finally:
            on_done(name)

    threads = [
        threading.Thread(target=target, args=(name, settings), name=name)
        for name, settings in sessions.items()
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(HANG_GUARD_SECONDS)
    results: dict[str, SessionResult] = {}
    for name in sessions:
        outcome = outcomes.get(name)
        if not isinstance(outcome, SessionResult):
            raise AssertionError(f"session {name} did not finish: {outcome!r}") from (
                outcome if isinstance(outcome, BaseException) else None
            )
        results[name] = outcome
    return results


@pytest.fixture
def lock_log(caplog: pytest.LogCaptureFixture) -> Iterator[list[logging.LogRecord]]:
    """The promotion lock's log records, as they happen (with their thread's name)."""
    caplog.set_level(logging.INFO, logger="model_training.promotion_lock")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign,assignment]
    logger = logging.getLogger("model_training.promotion_lock")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


@pytest.mark.parametrize("first", [GOOD, BAD], ids=["better-first", "worse-first"])
def test_sessions_forced_to_interleave_crown_the_better_model(
    first: str,
    mlflow_server: MlflowServer,
    monkeypatch: pytest.MonkeyPatch,
    lock_log: list[logging.LogRecord],
) -> None:
    second = BAD if first == GOOD else GOOD
    suffix = uuid.uuid4().hex[:8]
    model = f"race-{suffix}"
    first_inside = threading.Event()  # the first holds the champion's score, undecided
    second_tries = threading.Event()  # the second waits for the lock, or got past it
    first_done = threading.Event()

    class Waiting(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.threadName == second and "waiting for the promotion lock" in record.msg:
                second_tries.set()

    waiting = Waiting()
    logging.getLogger("model_training.promotion_lock").addHandler(waiting)
    champion_metrics = session._champion_metrics
    register_and_promote = session._register_and_promote

    def scored_champion(*args: Any) -> Any:
        scored = champion_metrics(*args)
        if threading.current_thread().name == first:
            first_inside.set()
            # hold the score until the other session tries to promote
            second_tries.wait(HANG_GUARD_SECONDS)
        else:
            # got in while the first still holds its score (no serialisation): let the first
            # finish, then decide on what was read before, as an unguarded session would
            second_tries.set()
            first_done.wait(HANG_GUARD_SECONDS)
        return scored

    def promote_second(*args: Any) -> Any:
        if threading.current_thread().name == second:
            first_inside.wait(HANG_GUARD_SECONDS)
        return register_and_promote(*args)

    monkeypatch.setattr(session, "_champion_metrics", scored_champion)
    monkeypatch.setattr(session, "_register_and_promote", promote_second)
    try:
        results = _run_sessions(
            {
                first: _settings(mlflow_server, f"race-{suffix}", model, first),
                second: _settings(mlflow_server, f"race-{suffix}", model, second),
            },
            on_done=lambda name: first_done.set() if name == first else None,
        )
    finally:
        logging.getLogger("model_training.promotion_lock").removeHandler(waiting)

    client = MlflowClient(mlflow_server.url)
    assert first_inside.is_set()
    assert second_tries.is_set()
    champion = client.get_model_version_by_alias(model, "champion")
    challenger = client.get_model_version_by_alias(model, "challenger")
    assert champion.version == results[GOOD].version
    assert champion.tags["model_family"] == GOOD
    assert challenger.version == results[BAD].version
    assert challenger.tags["model_family"] == BAD
    assert sorted([results[GOOD].version, results[BAD].version]) == ["1", "2"]
    # the second decided on the first's outcome, and said so
    assert f"champion v{results[first].version}" in results[second].decision.reason
    waits = [r.getMessage() for r in lock_log if r.threadName == second and "waiting" in r.msg]
    assert waits
    assert lock_name(model) in waits[0]
    with pytest.raises(MlflowException, match="RESOURCE_DOES_NOT_EXIST"):
        client.get_registered_model(lock_name(model))  # released


def test_sessions_creating_the_experiment_at_once_both_log_into_it(
    mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    suffix = uuid.uuid4().hex[:8]
    experiment = f"created-at-once-{suffix}"
    both_looked = threading.Barrier(2)
    looked: set[str] = set()
    get_by_name = MlflowClient.get_experiment_by_name

    def looked_up_together(self: MlflowClient, name: str) -> Any:
        found = get_by_name(self, name)
        thread = threading.current_thread().name
        if name == experiment and found is None and thread not in looked:
            looked.add(thread)
            both_looked.wait(HANG_GUARD_SECONDS)  # neither creates before both found nothing
        return found

    monkeypatch.setattr(MlflowClient, "get_experiment_by_name", looked_up_together)
    results = _run_sessions(
        {
            name: _settings(mlflow_server, experiment, f"created-{suffix}", GOOD)
            for name in ("one", "two")
        }
    )
    monkeypatch.undo()

    assert looked == {"one", "two"}
    client = MlflowClient(mlflow_server.url)
    created = client.get_experiment_by_name(experiment)
    assert created is not None
    assert {r.experiment_id for r in results.values()} == {created.experiment_id}
    runs = client.search_runs([created.experiment_id])
    parents = {r.info.run_id for r in runs if "mlflow.parentRunId" not in r.data.tags}
    assert parents == {r.parent_run_id for r in results.values()}
    assert len(runs) == 4  # two parents, one child each
    strays = [
        r
        for r in client.search_runs(["0"], max_results=1000)
        if r.info.run_id in parents or r.data.tags.get("mlflow.parentRunId") in parents
    ]
    assert strays == []  # nothing in the Default experiment
