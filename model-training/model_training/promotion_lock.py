"""The promotion lock: one training session at a time reads, decides and moves ``champion``.

The lock is a registered model named ``<model>.promotion-lock`` in MLflow itself, so it works
on every tracking store (PostgreSQL, SQLite) and for every trainer that can reach the server
(the container, ``make train``, a notebook). Creating a registered model is atomic: names are
unique in the registry, and the second creator gets ``RESOURCE_ALREADY_EXISTS``. Deleting it
releases the lock. Its tags say who holds it and until when (the lease): a lock whose holder
died without releasing it (SIGKILL, a lost machine) is broken by the next session once the
lease has expired. MLflow's basic-auth grants the creator MANAGE on the new name and sweeps
that grant when the model is deleted, so the ``trainer`` login can take and release it again
and again without any grant of its own.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from mlflow.exceptions import MlflowException

from model_training import interruption

if TYPE_CHECKING:
    from mlflow.entities.model_registry import RegisteredModel
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

#: Suffix of the lock's registered-model name.
LOCK_SUFFIX = ".promotion-lock"


class PromotionLockTimeoutError(RuntimeError):
    """Another session held the promotion lock for longer than this session may wait."""


class PromotionLockLostError(RuntimeError):
    """The lock was broken by another session (this one outlived its lease)."""


def lock_name(model_name: str) -> str:
    """The registered model that serves as the promotion lock of ``model_name``."""
    return f"{model_name}{LOCK_SUFFIX}"


@dataclass(frozen=True)
class _Observed:
    """A lock as another session sees it: who holds it and when its lease ends."""

    holder: str
    token: str
    created: float
    expires: float

    def describe(self) -> str:
        since = datetime.fromtimestamp(self.created, UTC).strftime("%H:%M:%S")
        until = datetime.fromtimestamp(self.expires, UTC).strftime("%H:%M:%S")
        return f"{self.holder} (since {since} UTC, lease until {until} UTC)"


class PromotionLock:
    """A lease lock on the registry's promotion step, held in MLflow.

    Args:
        client: An MLflow client of the registry.
        model_name: The registered model whose aliases the lock guards.
        holder: Who takes it, for the log and the tags (e.g. the session's name).
        lease_seconds: How long after it was taken another session may break it.
        wait_seconds: The longest this session waits for the lock.
        poll_seconds: Pause between two attempts while waiting.
    """

    def __init__(
        self,
        client: MlflowClient,
        model_name: str,
        holder: str,
        lease_seconds: float,
        wait_seconds: float,
        poll_seconds: float = 0.5,
    ) -> None:
        self.client = client
        self.name = lock_name(model_name)
        self.holder = f"{holder} on {socket.gethostname()} (pid {os.getpid()})"
        self.lease_seconds = lease_seconds
        self.wait_seconds = wait_seconds
        self.poll_seconds = poll_seconds
        self.token = uuid.uuid4().hex
        self.held = False

    def _tags(self) -> dict[str, str]:
        expires = datetime.now(UTC).timestamp() + self.lease_seconds
        return {
            "holder": self.holder,
            "token": self.token,
            "lease_seconds": f"{self.lease_seconds:g}",
            "expires_at": datetime.fromtimestamp(expires, UTC).isoformat(timespec="seconds"),
        }

    def _read(self) -> _Observed | None:
        """The lock as it is now, or None when it is gone (or this login may not read it)."""
        try:
            model: RegisteredModel = self.client.get_registered_model(self.name)
        except MlflowException as exc:
            # Without the name, basic-auth answers PERMISSION_DENIED rather than "not found"
            # (no grant exists on a deleted name): both mean "try to take it again".
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "PERMISSION_DENIED"):
                return None
            raise
        tags = model.tags or {}
        created = (model.creation_timestamp or 0) / 1000
        try:
            lease = float(tags["lease_seconds"])
        except (KeyError, ValueError):  # made by hand: the lease of this session applies
            lease = self.lease_seconds
        return _Observed(
            holder=tags.get("holder", "an unknown holder"),
            token=tags.get("token", ""),
            created=created,
            expires=created + lease,
        )

    def _try_create(self) -> bool:
        """One attempt to take the lock; True when this session now holds it."""
        try:
            # created and known to be held, or neither
            with interruption.deferred("taking the promotion lock"):
                self.client.create_registered_model(
                    self.name,
                    tags=self._tags(),
                    description="Promotion lock of a training session: it is deleted when "
                    "the session ends. Delete it by hand only if its holder is gone.",
                )
                self.held = True
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            return False
        return True

    def _break(self, stale: _Observed) -> None:
        log.warning(
            "breaking the promotion lock %r of %s: its lease expired", self.name, stale.describe()
        )
        try:
            self.client.delete_registered_model(self.name)
        except MlflowException as exc:
            if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "PERMISSION_DENIED"):
                raise

    def acquire(self) -> None:
        """Takes the lock, waiting (bounded) while another live session holds it.

        Logs once per holder who holds it. A lock whose lease expired is broken.

        Raises:
            PromotionLockTimeoutError: When the lock is still held after ``wait_seconds``.
        """
        deadline = time.monotonic() + self.wait_seconds
        announced = ""
        try:
            while not self._try_create():
                current = self._read()
                if current is None:  # released meanwhile, or held by a login that cannot read it
                    who = "a session this login cannot see"
                elif current.expires <= time.time():
                    self._break(current)
                    continue
                else:
                    who = current.describe()
                    if current.token != announced:
                        log.info("waiting for the promotion lock %r held by %s", self.name, who)
                        announced = current.token
                if time.monotonic() >= deadline:
                    raise PromotionLockTimeoutError(
                        f"the promotion lock {self.name!r} is held by {who}; gave up after "
                        f"{self.wait_seconds:g} s. If that session is gone, delete the "
                        "registered model of that name (or wait for its lease to expire) and "
                        "train again"
                    )
                time.sleep(self.poll_seconds)
        except BaseException:
            self.release()  # a stop signal may arrive just after the lock was taken
            raise
        log.info("promotion lock %r taken by %s", self.name, self.holder)

    def check(self) -> None:
        """Raises :class:`PromotionLockLostError` unless this session still holds the lock."""
        current = self._read()
        if current is None or current.token != self.token:
            self.held = False
            raise PromotionLockLostError(
                f"the promotion lock {self.name!r} was broken by another session (this one "
                f"held it longer than its lease of {self.lease_seconds:g} s); nothing was "
                "registered and no alias moved: train again"
            )

    def release(self) -> None:
        """Deletes the lock if this session still holds it; never raises."""
        if not self.held:
            return
        self.held = False
        try:
            current = self._read()
            if current is None or current.token != self.token:
                log.warning("promotion lock %r was no longer held by this session", self.name)
                return
            self.client.delete_registered_model(self.name)
        except Exception as exc:  # the session's own outcome matters more
            log.error(
                "could not release the promotion lock %r (%s): it expires after its lease of "
                "%g s, or delete that registered model",
                self.name,
                exc,
                self.lease_seconds,
            )
            return
        log.info("promotion lock %r released", self.name)
