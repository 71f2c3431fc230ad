"""The prediction log of the monitoring loop: its tables, and how services connect to it.

The log lives in the PostgreSQL database ``monitoring`` on mlflow-db. There the tables are
created by mlflow-db's ensure step (``mlflow-db/monitoring.sql``, run as the superuser); the
services log in as roles that can read and write rows but create nothing. The tables below
mirror that SQL column for column; :func:`connect` creates them only on SQLite (``make dev``,
tests).

- ``predictions``: one row per predicted wine: ``id`` (the answer's ``prediction_id``),
  ``created_at``, ``model_name``, ``model_version``, ``features`` (13 floats in model order,
  :data:`wine_mlops.features.FEATURE_NAMES`), ``class_id``, ``probabilities`` (3 floats in
  class id order).
- ``feedback``: the true class of a logged prediction, at most one per prediction; it goes
  with its prediction when that is deleted (``ON DELETE CASCADE``).

Timestamps are written in UTC and read back timezone-aware (SQLite too). SQLAlchemy is
imported here: only the services that declare it (prediction-api, model-training) import this
module.
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from wine_mlops.features import FEATURE_NAMES

logger = logging.getLogger(__name__)

#: Seconds a PostgreSQL login may take before it fails (libpq's ``connect_timeout``).
CONNECT_TIMEOUT_SECONDS: Final = 3
#: Milliseconds any one statement may run on PostgreSQL before the server cancels it.
STATEMENT_TIMEOUT_MS: Final = 5000
#: Seconds a caller waits for a free pooled connection before giving up.
POOL_TIMEOUT_SECONDS: Final = 3

#: JSON arrays: ``jsonb`` on PostgreSQL, SQLAlchemy's JSON (text) elsewhere.
_JSON_ARRAY = sa.JSON().with_variant(JSONB(), "postgresql")


class UtcDateTime(sa.TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that is written in UTC and always read back aware.

    PostgreSQL's ``timestamptz`` does so already; SQLite keeps no zone, so without this a
    timestamp would come back naive there. A naive value written is taken as UTC.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


metadata: Final = sa.MetaData()

predictions: Final = sa.Table(
    "predictions",
    metadata,
    sa.Column("id", sa.Uuid()),
    sa.Column("created_at", UtcDateTime(), nullable=False, server_default=sa.func.now()),
    sa.Column("model_name", sa.Text(), nullable=False),
    sa.Column("model_version", sa.Text(), nullable=False),
    sa.Column("features", _JSON_ARRAY, nullable=False),
    sa.Column("class_id", sa.SmallInteger(), nullable=False),
    sa.Column("probabilities", _JSON_ARRAY, nullable=False),
    sa.PrimaryKeyConstraint("id", name="predictions_pkey"),
    sa.Index("predictions_created_at_idx", "created_at"),
)

feedback: Final = sa.Table(
    "feedback",
    metadata,
    sa.Column("prediction_id", sa.Uuid()),
    sa.Column("true_class_id", sa.SmallInteger(), nullable=False),
    sa.Column("received_at", UtcDateTime(), nullable=False, server_default=sa.func.now()),
    sa.PrimaryKeyConstraint("prediction_id", name="feedback_pkey"),
    sa.ForeignKeyConstraint(
        ["prediction_id"],
        ["predictions.id"],
        name="feedback_prediction_id_fkey",
        ondelete="CASCADE",
    ),
    sa.CheckConstraint("true_class_id BETWEEN 0 AND 2", name="feedback_true_class_id_check"),
    sa.Index("feedback_received_at_idx", "received_at"),
)


def read_password(path: Path) -> str:
    """A password from a secret file, without its trailing newline(s).

    Raises:
        OSError: The file cannot be read.
        ValueError: The file holds no password.
    """
    password = path.read_text(encoding="utf-8").rstrip("\r\n")
    if not password:
        raise ValueError(f"the password file {path} is empty")
    return password


def safe_url(url: str | URL) -> str:
    """The URL with its password hidden (``***``), for logs and error messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<not a database URL>"


def _enable_sqlite_foreign_keys(dbapi_connection: Any, _record: Any) -> None:
    """SQLite enforces foreign keys (and cascades) only when each connection asks for it."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def connect(url: str, password_file: Path | None = None) -> Engine:
    """An engine on the prediction log that never keeps a caller waiting long.

    On PostgreSQL a login fails after :data:`CONNECT_TIMEOUT_SECONDS` and a statement after
    :data:`STATEMENT_TIMEOUT_MS`; pooled connections are checked before use, so a restarted
    database costs one failed call at most. Nothing is created there (mlflow-db's ensure step
    owns the schema; the service roles cannot create tables). On SQLite the file's folder and
    the tables are created if missing, and foreign keys are enforced.

    The engine connects lazily: a database that is down does not make this call fail.

    Args:
        url: A SQLAlchemy URL, e.g. ``postgresql+psycopg2://monitoring_app@mlflow-db:5432/
            monitoring`` or ``sqlite:///monitoring.db``.
        password_file: A secret file whose content (without the trailing newline) becomes the
            URL's password. It is never logged.

    Returns:
        The engine; the caller disposes of it.

    Raises:
        sqlalchemy.exc.ArgumentError: The URL cannot be parsed.
        OSError, ValueError: The password file cannot be read or is empty.
    """
    parsed = make_url(url)
    if password_file is not None:
        parsed = parsed.set(password=read_password(password_file))
    backend, driver = parsed.get_backend_name(), parsed.get_driver_name()

    if backend == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            parsed, pool_pre_ping=True, connect_args={"timeout": CONNECT_TIMEOUT_SECONDS}
        )
        sa.event.listen(engine, "connect", _enable_sqlite_foreign_keys)
        _create_tables(engine)
        logger.info("prediction log on %s (SQLite, tables ensured)", safe_url(parsed))
        return engine

    connect_args: dict[str, Any] = {}
    if backend == "postgresql" and driver in ("psycopg2", "psycopg"):  # both are libpq
        connect_args = {
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
        }
    engine = sa.create_engine(
        parsed,
        pool_pre_ping=True,
        pool_timeout=POOL_TIMEOUT_SECONDS,
        connect_args=connect_args,
    )
    logger.info("prediction log on %s", safe_url(parsed))
    return engine


def _create_tables(engine: Engine) -> None:
    """``create_all`` on SQLite; a second try covers workers racing to create the same table."""
    try:
        metadata.create_all(engine)
    except OperationalError as exc:
        if "already exists" not in str(exc):
            raise
        metadata.create_all(engine)


def labelled_rows(engine: Engine, limit: int | None = None) -> list[tuple[list[float], int]]:
    """The labelled production rows: what retraining adds to its training split.

    Each logged prediction that has feedback gives its 13 feature values (model order) and
    the true class id, newest feedback first. Rows whose features are not 13 finite numbers
    are skipped (and counted in a warning), so one bad row cannot break a training session.

    Args:
        engine: From :func:`connect` (``monitoring_reader`` is enough).
        limit: At most this many rows (the newest); None for all.

    Returns:
        ``(features, true_class_id)`` pairs.
    """
    query = (
        sa.select(predictions.c.features, feedback.c.true_class_id)
        .join(feedback, feedback.c.prediction_id == predictions.c.id)
        .order_by(feedback.c.received_at.desc(), feedback.c.prediction_id)
    )
    if limit is not None:
        query = query.limit(limit)
    with engine.connect() as conn:
        result = conn.execute(query).all()

    rows: list[tuple[list[float], int]] = []
    skipped = 0
    for features, true_class_id in result:
        values = _feature_values(features)
        if values is None:
            skipped += 1
            continue
        rows.append((values, int(true_class_id)))
    if skipped:
        logger.warning("skipped %d labelled row(s) whose features are not 13 numbers", skipped)
    return rows


def _feature_values(features: Any) -> list[float] | None:
    """The 13 feature values as floats, or None when the stored value is not that."""
    if not isinstance(features, list) or len(features) != len(FEATURE_NAMES):
        return None
    values: list[float] = []
    for value in features:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        number = float(value)
        if not math.isfinite(number):
            return None
        values.append(number)
    return values
