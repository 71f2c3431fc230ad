"""The promotion lock on a real MLflow server: a live lock is waited for (bounded), a lock
whose lease expired (its holder was killed) is broken, and the trainer's own login may take
and release it again and again."""

from __future__ import annotations

import uuid

import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from devstack import MlflowServer, auth_env, run_training
from model_training.promotion_lock import PromotionLock, lock_name

pytestmark = pytest.mark.integration


def _names() -> dict[str, str]:
    suffix = uuid.uuid4().hex[:8]
    return {"WINE_EXPERIMENT_NAME": f"lock-{suffix}", "WINE_MODEL_NAME": f"lock-{suffix}"}


def _hold(client: MlflowClient, model: str, holder: str, lease_seconds: str) -> None:
    """Takes the lock as a session that will never release it (e.g. one that was SIGKILLed)."""
    client.create_registered_model(
        lock_name(model),
        tags={"holder": holder, "token": "gone", "lease_seconds": lease_seconds},
    )


def test_a_held_lock_is_waited_for_then_the_session_gives_up_clearly(
    mlflow_server: MlflowServer,
) -> None:
    names = _names()
    model = names["WINE_MODEL_NAME"]
    client = MlflowClient(mlflow_server.url)
    _hold(client, model, "training-session-A on host-a (pid 7)", lease_seconds="3600")

    no_wait = {"WINE_PROMOTION_LOCK_WAIT_SECONDS": "0"}
    result = run_training(mlflow_server.url, candidates="LogisticRegression", **no_wait, **names)

    assert result.returncode == 1, result.stderr[-3000:]
    assert (
        f"waiting for the promotion lock '{lock_name(model)}' held by training-session-A on "
        "host-a (pid 7)" in result.stderr
    )
    assert "gave up after 0 s" in result.stderr
    assert "Traceback" not in result.stderr
    assert client.search_model_versions(f"name='{model}'") == []
    assert client.get_registered_model(lock_name(model)).tags["token"] == "gone"  # not its own


def test_a_lock_whose_lease_expired_is_broken_and_the_session_promotes(
    mlflow_server: MlflowServer,
) -> None:
    names = _names()
    model = names["WINE_MODEL_NAME"]
    client = MlflowClient(mlflow_server.url)
    _hold(client, model, "training-session-B on host-b (pid 9)", lease_seconds="0")

    result = run_training(mlflow_server.url, candidates="LogisticRegression", **names)

    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        f"breaking the promotion lock '{lock_name(model)}' of training-session-B on host-b "
        "(pid 9)" in result.stderr
    )
    assert client.get_model_version_by_alias(model, "champion").version == "1"
    with pytest.raises(MlflowException, match="RESOURCE_DOES_NOT_EXIST"):
        client.get_registered_model(lock_name(model))


def test_the_trainer_login_takes_and_releases_the_lock_again_and_again(
    mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow's auth grants the creator MANAGE and sweeps it on delete: no stale grant."""
    model = _names()["WINE_MODEL_NAME"]
    for key, value in auth_env("trainer").items():
        monkeypatch.setenv(key, value)
    trainer = MlflowClient(mlflow_server.url)
    for _ in range(3):
        first = PromotionLock(trainer, model, "first", lease_seconds=60, wait_seconds=60)
        first.acquire()
        second = PromotionLock(trainer, model, "second", lease_seconds=60, wait_seconds=0)
        with pytest.raises(RuntimeError, match="held by first"):
            second.acquire()
        first.release()
        # gone, and so is the trainer's grant on the name (a re-creation grants it anew)
        with pytest.raises(MlflowException, match="Permission denied"):
            trainer.get_registered_model(lock_name(model))
    monkeypatch.undo()  # the admin again
    with pytest.raises(MlflowException, match="RESOURCE_DOES_NOT_EXIST"):
        MlflowClient(mlflow_server.url).get_registered_model(lock_name(model))
