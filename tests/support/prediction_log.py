"""Prediction logs filled the way the API fills them, for tests of what reads them."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from wine_mlops import monitoring_db


def fill_log(url: str, rows: list[tuple[list[float], int]]) -> None:
    """Logs each wine as a prediction of its given class and labels it with that class.

    Args:
        url: The prediction log's database (an SQLite file creates its tables).
        rows: Each wine's 13 features and the class it is labelled with.
    """
    engine = monitoring_db.connect(url)
    with engine.begin() as conn:
        for features, true_class in rows:
            prediction = uuid.uuid4()
            conn.execute(
                sa.insert(monitoring_db.predictions).values(
                    id=prediction,
                    model_name="wine-classifier",
                    model_version="1",
                    features=features,
                    class_id=true_class,
                    probabilities=[1 / 3, 1 / 3, 1 / 3],
                )
            )
            conn.execute(
                sa.insert(monitoring_db.feedback).values(
                    prediction_id=prediction, true_class_id=true_class
                )
            )
    engine.dispose()
