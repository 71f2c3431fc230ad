"""The prediction log: every answered wine written to the monitoring database, off the hot path.

A request costs the log one :meth:`PredictionLog.record` call: one entry (the answers' ids,
the time, the model, the feature matrix, the best classes and probabilities the predictor
already has) appended to a bounded in-memory queue, never waiting. A writer thread of each
worker process expands the entries into rows and inserts them in batches of
``WINE_PREDICTION_LOG_BATCH`` rows, every ``WINE_PREDICTION_LOG_FLUSH_SECONDS`` (sooner when a
batch is waiting), and deletes rows older than ``WINE_PREDICTION_LOG_RETENTION_DAYS`` at most
once an hour (their feedback goes with them).

Nothing the database does reaches a prediction: when the queue is full
(``WINE_PREDICTION_LOG_QUEUE`` rows) the new rows are dropped; when an insert fails (database
down, refusing, timing out) its rows are dropped and the writer waits, doubling the wait up
to :data:`MAX_BACKOFF_SECONDS`, before it tries again, by itself. Each lost row is counted in
``wine_api_prediction_log_dropped_total{reason="queue_full|db_error"}`` and the losses are
logged at most once every :data:`DROP_REPORT_SECONDS` (with the last error), never one line a
row.

Feedback (:meth:`PredictionLog.label`) reads and writes the same database in a small thread
pool of its own, so that a database that hangs can hold neither the event loop nor the thread
pool large prediction batches run in.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from prediction_api.metrics import ApiMetrics
from prediction_api.serving import ServedModel
from prediction_api.settings import ApiSettings
from wine_mlops import monitoring_db
from wine_mlops.monitoring_db import feedback, predictions

log = logging.getLogger(__name__)

#: The longest wait of the writer between two attempts while the database fails.
MAX_BACKOFF_SECONDS: Final = 10.0
#: The first wait after a failed attempt.
FIRST_BACKOFF_SECONDS: Final = 0.5
#: Losses are logged at most this often (seconds).
DROP_REPORT_SECONDS: Final = 60.0
#: Retention runs at most this often (seconds).
RETENTION_EVERY_SECONDS: Final = 3600.0
#: Seconds the app's shutdown waits for the writer to write what is queued (within the
#: workers' graceful shutdown, :data:`prediction_api.__main__.GRACEFUL_WORKERS_SECONDS`).
STOP_SECONDS: Final = 3.0
#: Threads of the feedback pool: as many feedback requests at once as wait on the database.
FEEDBACK_THREADS: Final = 4
#: Below this many ids, one wine's way of formatting is quicker than the batch way.
_FEW_IDS: Final = 16


def new_prediction_ids(count: int) -> list[str]:
    """``count`` random UUID4s as strings (lower-case, with hyphens), made in one go.

    One ``os.urandom`` call for all, the version (4) and variant bits set in place, and the
    text formatted at once: a batch of 1,000 takes about a twentieth of what 1,000
    ``str(uuid.uuid4())`` take.
    """
    raw = bytearray(os.urandom(16 * count))
    if count < _FEW_IDS:
        for i in range(6, 16 * count, 16):
            raw[i] = (raw[i] & 0x0F) | 0x40
            raw[i + 2] = (raw[i + 2] & 0x3F) | 0x80
        text = raw.hex()
        return [
            f"{text[i : i + 8]}-{text[i + 8 : i + 12]}-{text[i + 12 : i + 16]}-"
            f"{text[i + 16 : i + 20]}-{text[i + 20 : i + 32]}"
            for i in range(0, 32 * count, 32)
        ]
    octets = np.frombuffer(raw, dtype=np.uint8).reshape(count, 16)
    octets[:, 6] = (octets[:, 6] & 0x0F) | 0x40
    octets[:, 8] = (octets[:, 8] & 0x3F) | 0x80
    hexed = np.frombuffer(raw.hex().encode("ascii"), dtype=np.uint8)  # octets is a view of raw
    hexed = hexed.reshape(count, 32)
    chars = np.full((count, 37), ord("-"), dtype=np.uint8)
    chars[:, 0:8] = hexed[:, 0:8]
    chars[:, 9:13] = hexed[:, 8:12]
    chars[:, 14:18] = hexed[:, 12:16]
    chars[:, 19:23] = hexed[:, 16:20]
    chars[:, 24:36] = hexed[:, 20:32]
    chars[:, 36] = ord("\n")
    return chars.tobytes().decode("ascii").split("\n")[:count]


class LogUnavailableError(Exception):
    """The prediction log is off, or its database cannot be reached (HTTP 503)."""


class UnknownPredictionError(Exception):
    """Feedback names predictions the log does not hold (HTTP 404).

    Args:
        ids: The unknown prediction ids.
    """

    def __init__(self, ids: Sequence[str]) -> None:
        shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
        super().__init__(
            f"no logged prediction has the id {shown} (unknown, older than the retention "
            "period, or logged while the prediction log was failing)"
        )
        self.ids = list(ids)


class ConflictingLabelError(Exception):
    """Feedback gives another class than the one recorded before (HTTP 409).

    Args:
        conflicts: ``(prediction id, class id recorded, class id sent)`` of each.
    """

    def __init__(self, conflicts: Sequence[tuple[str, int, int]]) -> None:
        shown = "; ".join(
            f"{pid} is labelled {old}, not {new}" for pid, old, new in conflicts[:5]
        ) + (f"; and {len(conflicts) - 5} more" if len(conflicts) > 5 else "")
        super().__init__(f"another true class was recorded before: {shown}")
        self.conflicts = list(conflicts)


@dataclass(frozen=True)
class Labelled:
    """What became of one feedback (the fields of ``FeedbackResult``)."""

    prediction_id: str
    true_class_id: int
    predicted_class_id: int
    correct: bool
    recorded: bool


#: One queued request: (sequence number, unix time, model name, model version, class ids in
#: probability column order, prediction ids, feature matrix, best column per row,
#: probabilities).
_Entry = tuple[int, float, str, str, tuple[int, ...], list[str], np.ndarray, np.ndarray, np.ndarray]


class PredictionLog:
    """The bounded queue, the writer thread and the feedback of one worker process.

    Args:
        url: The database's SQLAlchemy URL (``WINE_MONITORING_DB_URL``).
        password_file: The secret file of its password, or None.
        metrics: Counts written and lost rows, the queue depth and recorded feedback.
        queue_rows: The most rows waiting at once; more are dropped.
        batch_rows: Rows per ``INSERT``.
        flush_seconds: The longest a row waits before it is written.
        retention_days: Rows older than this are deleted.
        workers: The API's worker processes: with more than one, an unknown id may still be
            in another worker's queue, so feedback waits a flush interval for it.
    """

    def __init__(
        self,
        url: str,
        password_file: Path | None,
        metrics: ApiMetrics,
        *,
        queue_rows: int = 10_000,
        batch_rows: int = 500,
        flush_seconds: float = 1.0,
        retention_days: float = 30.0,
        workers: int = 1,
    ) -> None:
        self.url = url
        self.password_file = password_file
        self.metrics = metrics
        self.queue_rows = queue_rows
        self.batch_rows = batch_rows
        self.flush_seconds = flush_seconds
        self.retention_days = retention_days
        self.workers = workers
        self._engine: Engine | None = None
        self._lock = threading.Lock()
        self._done = threading.Condition(self._lock)
        self._entries: deque[_Entry] = deque()
        self._queued = 0  # rows in _entries
        self._seq = 0  # the last entry queued
        self._done_seq = 0  # the last entry written or dropped
        self._wake = threading.Event()  # a batch is waiting, or something urgent
        self._urgent = threading.Event()  # a flush is asked for, or the log stops
        self._stopping = threading.Event()
        self._writer: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        # losses not yet logged, by reason, and the last database error
        self._unreported: dict[str, int] = {"queue_full": 0, "db_error": 0}
        self._last_error = ""
        self._last_report = -DROP_REPORT_SECONDS
        self._last_connect_report = -DROP_REPORT_SECONDS
        self._next_retention = 0.0
        self._dropped_children = {
            reason: metrics.prediction_log_dropped.labels(reason)
            for reason in ("queue_full", "db_error")
        }

    # -- the hot path ---------------------------------------------------------------------

    def record(
        self,
        ids: list[str],
        served: ServedModel,
        matrix: np.ndarray,
        best: np.ndarray,
        probabilities: np.ndarray,
    ) -> None:
        """Queues one request's answers (never blocks; drops them when the queue is full).

        Args:
            ids: The answers' prediction ids, one per row.
            served: The model that answered.
            matrix: The feature values (rows x 13, model order).
            best: Each row's best class, as a column of ``probabilities``.
            probabilities: Each row's probabilities (columns in ``served.class_ids`` order).
        """
        count = len(ids)
        with self._lock:
            if self._queued + count > self.queue_rows:
                self._unreported["queue_full"] += count
                full = True
            else:
                self._seq += 1
                self._entries.append(
                    (
                        self._seq,
                        time.time(),
                        served.ref.name,
                        served.ref.version,
                        served.class_ids,
                        ids,
                        matrix,
                        best,
                        probabilities,
                    )
                )
                self._queued += count
                depth = self._queued
                full = False
        if full:
            self._dropped_children["queue_full"].inc(count)
            return
        self.metrics.prediction_log_queued.set(depth)
        if depth >= self.batch_rows:
            self._wake.set()

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Starts the writer thread and the feedback pool (in the worker process)."""
        self._stopping.clear()
        self._engine = self._connect()
        self._pool = ThreadPoolExecutor(FEEDBACK_THREADS, thread_name_prefix="feedback")
        self._writer = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._writer.start()

    def stop(self, timeout: float = STOP_SECONDS) -> None:
        """Writes what is queued (at most ``timeout`` seconds), then stops the writer."""
        self._stopping.set()
        self._urgent.set()
        self._wake.set()
        if self._writer is not None:
            self._writer.join(timeout)
            if self._writer.is_alive():
                with self._lock:
                    waiting = self._queued
                log.warning(
                    "prediction log: the database did not take the last rows within %g s; "
                    "%d queued row(s) are lost",
                    timeout,
                    waiting,
                )
            self._writer = None
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def flush(self, timeout: float) -> bool:
        """Asks the writer to write everything queued until now and waits for it.

        Returns:
            Whether it was written or dropped within ``timeout`` seconds.
        """
        with self._lock:
            target = self._seq
            if self._done_seq >= target:
                return True
        if self._writer is None:
            return False
        self._urgent.set()
        self._wake.set()
        with self._done:
            return self._done.wait_for(lambda: self._done_seq >= target, timeout)

    @property
    def engine(self) -> Engine | None:
        """The database engine of this worker (None before start, or while the password file
        cannot be read)."""
        return self._engine

    def _connect(self) -> Engine | None:
        try:
            return monitoring_db.connect(self.url, self.password_file)
        except (OSError, ValueError, SQLAlchemyError) as exc:
            error = f"{type(exc).__name__}: {exc}"
            now = time.monotonic()
            # once, then again when it changes or after a quiet DROP_REPORT_SECONDS
            if error != self._last_error or now - self._last_connect_report >= DROP_REPORT_SECONDS:
                self._last_connect_report = now
                log.error(
                    "prediction log: cannot use %s: %s (retrying)",
                    monitoring_db.safe_url(self.url),
                    exc,
                )
            self._last_error = error
            return None

    # -- the writer thread ------------------------------------------------------------------

    def _run(self) -> None:
        delay = 0.0
        while True:
            if delay:
                self._urgent.wait(delay)
            else:
                self._wake.wait(self.flush_seconds)
            self._wake.clear()
            self._urgent.clear()
            stopping = self._stopping.is_set()
            try:
                written = self._write(self._take())
                if written and not stopping:
                    self._retain()
                self._report()
            except Exception:  # the writer must outlive any surprise
                log.exception("prediction log: the writer failed; it carries on")
                written = False
            delay = (
                0.0 if written else min(max(delay * 2, FIRST_BACKOFF_SECONDS), MAX_BACKOFF_SECONDS)
            )
            if stopping:
                return

    def _take(self) -> list[_Entry]:
        with self._lock:
            entries = list(self._entries)
            self._entries.clear()
            self._queued = 0
        if entries:
            self.metrics.prediction_log_queued.set(0)
        return entries

    def _write(self, entries: list[_Entry]) -> bool:
        """Inserts the entries' rows in batches; drops and counts them when that fails.

        Returns:
            False when the database failed (the writer then backs off).
        """
        if not entries:
            return True
        total = sum(len(entry[5]) for entry in entries)
        done = 0
        try:
            rows = self._rows(entries)
            engine = self._engine or self._reconnect()  # None: no password file to read
            if engine is not None:
                for start in range(0, len(rows), self.batch_rows):
                    chunk = rows[start : start + self.batch_rows]
                    with engine.begin() as connection:
                        connection.execute(predictions.insert(), chunk)
                    done += len(chunk)
                    self.metrics.prediction_log_rows.inc(len(chunk))
        except SQLAlchemyError as exc:
            self._last_error = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
        except Exception as exc:  # not the database's fault, but the rows are lost all the same
            log.exception("prediction log: rows could not be written")
            self._last_error = f"{type(exc).__name__}: {exc}"
        finally:
            if done < total:
                self._dropped_children["db_error"].inc(total - done)
                with self._lock:
                    self._unreported["db_error"] += total - done
            with self._done:
                self._done_seq = entries[-1][0]
                self._done.notify_all()
        return done == total

    def _reconnect(self) -> Engine | None:
        self._engine = self._connect()
        return self._engine

    @staticmethod
    def _rows(entries: list[_Entry]) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for _, at, name, version, class_ids, ids, matrix, best, probabilities in entries:
            created = datetime.fromtimestamp(at, UTC)
            order = np.argsort(class_ids)
            ordered = (
                probabilities if (order == np.arange(len(order))).all() else probabilities[:, order]
            )
            classes = np.asarray(class_ids)[best].tolist()
            rows.extend(
                {
                    "id": uuid.UUID(pid),
                    "created_at": created,
                    "model_name": name,
                    "model_version": version,
                    "features": features,
                    "class_id": class_id,
                    "probabilities": shares,
                }
                for pid, features, class_id, shares in zip(
                    ids, matrix.tolist(), classes, ordered.tolist(), strict=True
                )
            )
        return rows

    def _retain(self) -> None:
        """Deletes rows older than the retention period, at most once an hour."""
        now = time.monotonic()
        if now < self._next_retention or self._engine is None:
            return
        self._next_retention = now + RETENTION_EVERY_SECONDS
        cutoff = datetime.now(UTC) - timedelta(days=self.retention_days)
        try:
            with self._engine.begin() as connection:
                deleted = connection.execute(
                    predictions.delete().where(predictions.c.created_at < cutoff)
                ).rowcount
        except SQLAlchemyError as exc:
            self._next_retention = now + 60.0  # try again soon
            log.warning("prediction log: retention delete failed: %s", str(exc).splitlines()[0])
            return
        if deleted:
            log.info(
                "prediction log: deleted %d prediction(s) older than %g days",
                deleted,
                self.retention_days,
            )

    def _report(self) -> None:
        """Logs the rows lost since the last report, at most once a :data:`DROP_REPORT_SECONDS`."""
        now = time.monotonic()
        if now - self._last_report < DROP_REPORT_SECONDS:
            return
        with self._lock:
            lost = dict(self._unreported)
            if not any(lost.values()):
                return
            self._unreported = {reason: 0 for reason in lost}
        self._last_report = now
        log.warning(
            "prediction log: %d row(s) not logged (queue full: %d, database errors: %d)%s; "
            "predictions are answered all the same; next report in %g s at the earliest",
            sum(lost.values()),
            lost["queue_full"],
            lost["db_error"],
            f"; last database error: {self._last_error}" if lost["db_error"] else "",
            DROP_REPORT_SECONDS,
        )

    # -- feedback -----------------------------------------------------------------------------

    async def label_async(self, items: Sequence[tuple[str, int]], timeout: float) -> list[Labelled]:
        """:meth:`label` in the feedback pool, waiting at most ``timeout`` seconds.

        Raises:
            LogUnavailableError: The database does not answer in time, or cannot be reached.
            UnknownPredictionError, ConflictingLabelError: As :meth:`label`.
        """
        pool = self._pool
        if pool is None:
            raise LogUnavailableError("the prediction log is not running")
        future = asyncio.wrap_future(pool.submit(self.label, items))
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise LogUnavailableError(
                f"the monitoring database did not answer within {timeout:g} s"
            ) from None

    def label(self, items: Sequence[tuple[str, int]]) -> list[Labelled]:
        """Records true classes of logged predictions, all or none.

        An id not found is looked for again after this worker's queue is written, and, with
        several workers, for up to one flush interval more (it may wait in another worker's
        queue).

        Args:
            items: ``(prediction id, true class id)`` pairs; ids in lower case.

        Returns:
            What became of each, in order: recorded now, or the same label recorded before.

        Raises:
            UnknownPredictionError: An id is not in the log (nothing is recorded).
            ConflictingLabelError: An id is labelled with another class already, or twice in
                ``items`` with different classes (nothing is recorded).
            LogUnavailableError: The database cannot be reached.
        """
        engine = self._engine or self._reconnect()
        if engine is None:  # the reason (an unreadable password file) is in the log
            raise LogUnavailableError("the monitoring database cannot be reached")
        try:
            for _attempt in range(3):
                try:
                    return self._label(engine, items)
                except IntegrityError:
                    continue  # another request labelled one of them meanwhile: look again
            raise LogUnavailableError("the labels kept changing under this request; retry")
        except (UnknownPredictionError, ConflictingLabelError, LogUnavailableError):
            raise
        except SQLAlchemyError as exc:
            log.warning("feedback: the monitoring database failed: %s", str(exc).splitlines()[0])
            raise LogUnavailableError(
                f"the monitoring database cannot be reached ({type(exc).__name__})"
            ) from None

    def _label(self, engine: Engine, items: Sequence[tuple[str, int]]) -> list[Labelled]:
        wanted = list(dict.fromkeys(pid for pid, _ in items))
        known = self._lookup(engine, wanted)
        missing = [pid for pid in wanted if pid not in known]
        if missing:
            self.flush(self.flush_seconds + STOP_SECONDS)
            known.update(self._lookup(engine, missing))
            missing = [pid for pid in missing if pid not in known]
            deadline = time.monotonic() + self.flush_seconds
            while missing and self.workers > 1 and time.monotonic() < deadline:
                time.sleep(min(0.1, self.flush_seconds / 5))
                known.update(self._lookup(engine, missing))
                missing = [pid for pid in missing if pid not in known]
        if missing:
            raise UnknownPredictionError(missing)

        labels = {pid: label for pid, (_, label) in known.items()}
        conflicts: list[tuple[str, int, int]] = []
        new: dict[str, int] = {}
        recorded_here: list[bool] = []
        for pid, true_class in items:
            before = labels.get(pid)
            if before is None:
                labels[pid] = true_class
                new[pid] = true_class
                recorded_here.append(True)
            elif before != true_class:
                conflicts.append((pid, before, true_class))
            else:
                recorded_here.append(False)
        if conflicts:
            raise ConflictingLabelError(conflicts)
        if new:
            now = datetime.now(UTC)
            with engine.begin() as connection:
                connection.execute(
                    feedback.insert(),
                    [
                        {
                            "prediction_id": uuid.UUID(pid),
                            "true_class_id": label,
                            "received_at": now,
                        }
                        for pid, label in new.items()
                    ],
                )
        results = []
        for (pid, true_class), recorded in zip(items, recorded_here, strict=True):
            predicted = known[pid][0]
            results.append(Labelled(pid, true_class, predicted, predicted == true_class, recorded))
            if recorded:
                self.metrics.count_feedback(predicted == true_class)
        return results

    @staticmethod
    def _lookup(engine: Engine, ids: list[str]) -> dict[str, tuple[int, int | None]]:
        """Each logged id's predicted class and recorded label (None when unlabelled)."""
        query = (
            sa.select(predictions.c.id, predictions.c.class_id, feedback.c.true_class_id)
            .outerjoin(feedback, feedback.c.prediction_id == predictions.c.id)
            .where(predictions.c.id.in_([uuid.UUID(pid) for pid in ids]))
        )
        with engine.connect() as connection:
            found = connection.execute(query).all()
        return {
            str(pid): (int(predicted), None if label is None else int(label))
            for pid, predicted, label in found
        }


def build_prediction_log(settings: ApiSettings, metrics: ApiMetrics) -> PredictionLog | None:
    """The prediction log the settings ask for, or None when ``WINE_MONITORING_DB_URL`` is
    unset (answers still carry ids; feedback answers 503)."""
    if not settings.monitoring_db_url:
        return None
    return PredictionLog(
        settings.monitoring_db_url,
        settings.monitoring_db_password_file,
        metrics,
        queue_rows=settings.prediction_log_queue,
        batch_rows=settings.prediction_log_batch,
        flush_seconds=settings.prediction_log_flush_seconds,
        retention_days=settings.prediction_log_retention_days,
        workers=settings.workers,
    )
