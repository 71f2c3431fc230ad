"""The prediction log's tables on SQLite (``make dev``): written rows come back as training
rows, feedback needs its prediction, and deleting a prediction takes its feedback along."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from wine_mlops.features import FEATURE_NAMES
from wine_mlops.monitoring_db import (
    connect,
    feedback,
    labelled_rows,
    predictions,
    safe_url,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = connect(f"sqlite:///{tmp_path / 'log' / 'monitoring.db'}")
    yield engine
    engine.dispose()


def wine(seed: float) -> list[float]:
    return [seed + i / 10 for i in range(len(FEATURE_NAMES))]


def log_prediction(engine: Engine, features: list[Any], class_id: int = 0) -> uuid.UUID:
    prediction_id = uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(
            predictions.insert().values(
                id=prediction_id,
                created_at=T0,
                model_name="wine-classifier",
                model_version="3",
                features=features,
                class_id=class_id,
                probabilities=[0.8, 0.15, 0.05],
            )
        )
    return prediction_id


def label(engine: Engine, prediction_id: uuid.UUID, true_class_id: int, minute: int) -> None:
    with engine.begin() as conn:
        conn.execute(
            feedback.insert().values(
                prediction_id=prediction_id,
                true_class_id=true_class_id,
                received_at=T0 + timedelta(minutes=minute),
            )
        )


def count(engine: Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def test_labelled_rows_are_the_logged_features_with_their_true_class_newest_first(
    engine: Engine,
) -> None:
    first = log_prediction(engine, wine(1.0), class_id=0)
    second = log_prediction(engine, wine(2.0), class_id=1)
    log_prediction(engine, wine(3.0), class_id=2)  # never labelled: not a training row
    label(engine, first, true_class_id=0, minute=1)
    label(engine, second, true_class_id=2, minute=5)

    rows = labelled_rows(engine)

    assert rows == [(wine(2.0), 2), (wine(1.0), 0)]
    assert all(isinstance(value, float) for value in rows[0][0])
    assert labelled_rows(engine, limit=1) == [(wine(2.0), 2)]


def test_a_prediction_reads_back_as_written(engine: Engine) -> None:
    prediction_id = log_prediction(engine, wine(1.5), class_id=1)

    with engine.connect() as conn:
        row = conn.execute(sa.select(predictions)).one()

    assert row.id == prediction_id
    assert row.features == wine(1.5)
    assert row.probabilities == [0.8, 0.15, 0.05]
    assert (row.model_name, row.model_version, row.class_id) == ("wine-classifier", "3", 1)


def test_timestamps_come_back_aware_in_utc_and_compare_across_zones(engine: Engine) -> None:
    old, new = log_prediction(engine, wine(1.0)), log_prediction(engine, wine(2.0))
    with engine.begin() as conn:
        conn.execute(  # written with another zone: stored as the same instant in UTC
            predictions.update()
            .where(predictions.c.id == new)
            .values(created_at=datetime(2026, 1, 2, 1, 0, tzinfo=timezone(timedelta(hours=2))))
        )
        conn.execute(feedback.insert().values(prediction_id=new, true_class_id=1))  # now

    with engine.connect() as conn:
        rows = conn.execute(sa.select(predictions.c.id, predictions.c.created_at)).all()
        created: dict[uuid.UUID, datetime] = {row.id: row.created_at for row in rows}
        [received] = conn.execute(sa.select(feedback.c.received_at)).scalars().all()
    assert created == {old: T0, new: datetime(2026, 1, 1, 23, 0, tzinfo=UTC)}
    assert received.tzinfo is not None
    assert abs(datetime.now(UTC) - received) < timedelta(hours=1)

    # Retention's question: what is older than a cutoff given in another zone?
    cutoff = datetime(2026, 1, 1, 13, 0, tzinfo=timezone(timedelta(hours=-5)))  # 18:00 UTC
    with engine.begin() as conn:
        conn.execute(predictions.delete().where(predictions.c.created_at < cutoff))
    with engine.connect() as conn:
        assert conn.execute(sa.select(predictions.c.id)).scalars().all() == [new]


def test_feedback_for_an_unknown_prediction_is_rejected(engine: Engine) -> None:
    with pytest.raises(IntegrityError, match="FOREIGN KEY"):
        label(engine, uuid.uuid4(), true_class_id=1, minute=0)
    assert count(engine, feedback) == 0


def test_a_true_class_outside_0_to_2_is_rejected(engine: Engine) -> None:
    prediction_id = log_prediction(engine, wine(1.0))
    with pytest.raises(IntegrityError, match="CHECK"):
        label(engine, prediction_id, true_class_id=3, minute=0)
    assert labelled_rows(engine) == []


def test_deleting_a_prediction_removes_its_feedback(engine: Engine) -> None:
    kept, deleted = log_prediction(engine, wine(1.0)), log_prediction(engine, wine(2.0))
    label(engine, kept, 1, minute=0)
    label(engine, deleted, 2, minute=1)

    with engine.begin() as conn:
        conn.execute(predictions.delete().where(predictions.c.id == deleted))

    assert count(engine, feedback) == 1
    assert labelled_rows(engine) == [(wine(1.0), 1)]


def test_a_second_connection_finds_the_rows_and_creates_nothing_new(
    engine: Engine, tmp_path: Path
) -> None:
    prediction_id = log_prediction(engine, wine(1.0))
    label(engine, prediction_id, 2, minute=0)

    again = connect(f"sqlite:///{tmp_path / 'log' / 'monitoring.db'}")
    try:
        assert labelled_rows(again) == [(wine(1.0), 2)]
    finally:
        again.dispose()


def test_rows_whose_features_are_not_13_numbers_are_skipped(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    bad: list[list[Any]] = [wine(1.0)[:12], [*wine(1.0)[:12], "x"]]
    for minute, features in enumerate([*bad, wine(4.0)]):
        label(engine, log_prediction(engine, features), 1, minute=minute)

    with caplog.at_level(logging.WARNING, logger="wine_mlops.monitoring_db"):
        rows = labelled_rows(engine)

    assert rows == [(wine(4.0), 1)]
    assert "skipped 2 labelled row(s)" in caplog.text


def test_the_password_comes_from_the_file_and_never_shows_in_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = tmp_path / "monitoring-db-password"
    secret.write_text("s3cret-from-file\n")

    with caplog.at_level(logging.INFO, logger="wine_mlops.monitoring_db"):
        engine = connect(
            "postgresql+psycopg2://monitoring_app@127.0.0.1:1/monitoring", password_file=secret
        )

    try:
        assert engine.url.password == "s3cret-from-file"
        assert "s3cret" not in caplog.text
        assert "monitoring_app:***@127.0.0.1:1/monitoring" in caplog.text
    finally:
        engine.dispose()


def test_an_empty_password_file_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "empty"
    secret.write_text("\n")
    with pytest.raises(ValueError, match="is empty"):
        connect("postgresql+psycopg2://monitoring_app@127.0.0.1:1/monitoring", secret)


def test_a_database_that_does_not_answer_fails_fast(tmp_path: Path) -> None:
    # Nothing listens on port 1: the first use fails with an error, instead of hanging.
    engine = connect("postgresql+psycopg2://monitoring_app:pw@127.0.0.1:1/monitoring")
    try:
        with pytest.raises(sa.exc.OperationalError):
            labelled_rows(engine)
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql+psycopg2://monitoring_app:p%40ss@mlflow-db:5432/monitoring",
            "postgresql+psycopg2://monitoring_app:***@mlflow-db:5432/monitoring",
        ),
        ("sqlite:///var/monitoring.db", "sqlite:///var/monitoring.db"),
        ("not a url :pw", "<not a database URL>"),
    ],
)
def test_safe_url_hides_the_password(url: str, shown: str) -> None:
    assert safe_url(url) == shown
