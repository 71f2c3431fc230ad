"""The hot path: validated rows in, answers of the model served right now out.

No HTTP here: a request that cannot be answered raises a domain error, which
:mod:`prediction_api.errors` turns into a problem answer.
"""

from __future__ import annotations

import numpy as np
from pydantic import TypeAdapter

from prediction_api.metrics import ApiMetrics
from prediction_api.prediction_log import PredictionLog, new_prediction_ids
from prediction_api.schemas import Prediction, PredictionJson, RangeWarning
from prediction_api.serving import ModelStore, ServedModel

#: Serialises answers built as plain dicts with the response model's fields, in its order
#: (no model instance per row, no second validation of what was built here).
_ONE: TypeAdapter[PredictionJson] = TypeAdapter(PredictionJson)
_MANY: TypeAdapter[list[PredictionJson]] = TypeAdapter(list[PredictionJson])


class NoModelLoadedError(Exception):
    """No model is loaded yet (before the first load, or while every load fails).

    Args:
        model_uri: The model the API serves, e.g. ``models:/wine-classifier@champion``.
        reason: Why, fit for clients (no hosts, URLs or exception text: those are in the log).
    """

    def __init__(self, model_uri: str, reason: str) -> None:
        super().__init__(f"no model loaded yet ({model_uri}): {reason}; retry shortly")
        self.model_uri = model_uri
        self.reason = reason


class Predictor:
    """Turns validated rows into answers with the model served right now.

    Args:
        store: Holds the served model.
        metrics: Counts predictions and out-of-range inputs.
        model_uri: The model served, for messages (``models:/<name>@<alias>``).
        prediction_log: Where every answer is logged (one queued entry per request, with
            the arrays the answers are built from), or None when the log is off.
    """

    def __init__(
        self,
        store: ModelStore,
        metrics: ApiMetrics,
        model_uri: str,
        prediction_log: PredictionLog | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.model_uri = model_uri
        self.prediction_log = prediction_log

    def served(self) -> ServedModel:
        """The model serving now.

        Raises:
            NoModelLoadedError: While no model is loaded.
        """
        served = self.store.current
        if served is None:
            reason = self.store.public_error or "the first load is in progress"
            raise NoModelLoadedError(self.model_uri, reason)
        return served

    def predict(
        self, rows: list[list[float]]
    ) -> tuple[ServedModel, np.ndarray, np.ndarray, np.ndarray, list[list[RangeWarning]] | None]:
        """Classifies rows, checks them against the model's training ranges, counts both.

        Args:
            rows: Wines, feature values in model order.

        Returns:
            The model that answered, the rows as a matrix, each row's best class as an index
            into its ``class_ids``, each row's probabilities (columns in ``class_ids``
            order), and each row's warnings, or None when no value of any row is out of
            range.

        Raises:
            NoModelLoadedError: While no model is loaded.
        """
        served = self.served()
        matrix = np.asarray(rows, dtype=np.float64)
        probabilities = served.predict_proba(matrix)
        best = probabilities.argmax(axis=1)
        warnings = None
        if served.ranges is not None:
            outside = served.ranges.outside(matrix)
            if outside is not None:
                self.metrics.observe_out_of_range(*served.ranges.sides(matrix))
                warnings = served.ranges.warnings(matrix, outside)
        labels, version = served.class_labels, served.ref.version
        if len(best) == 1:
            self.metrics.count_predictions(labels[int(best[0])], version, 1)
        else:
            for index, count in enumerate(np.bincount(best, minlength=len(labels)).tolist()):
                if count:
                    self.metrics.count_predictions(labels[index], version, count)
        return served, matrix, best, probabilities, warnings

    def answers(self, rows: list[list[float]]) -> list[Prediction]:
        """The answer for each row, in order, all from one model version."""
        return [Prediction(**answer) for answer in self._answer_dicts(rows)]

    def answers_json(self, rows: list[list[float]], one: bool = False) -> bytes:
        """The answers of :meth:`answers` as the JSON body of the response, built in one go.

        Args:
            rows: Wines, feature values in model order.
            one: Answer the single row as one object rather than a list of one.

        Returns:
            UTF-8 JSON: a :class:`Prediction` object (``one``) or a list of them, the same
            fields in the same order as the response model's.
        """
        answers = self._answer_dicts(rows)
        return _ONE.dump_json(answers[0]) if one else _MANY.dump_json(answers)

    def _answer_dicts(self, rows: list[list[float]]) -> list[PredictionJson]:
        """Each row's answer as a plain dict with :class:`Prediction`'s fields, in order,
        each with a new prediction id; the whole request queued on the prediction log."""
        served, matrix, best, probabilities, warnings = self.predict(rows)
        labels, ids = served.class_labels, served.class_ids
        name, version = served.ref.name, served.ref.version
        prediction_ids = new_prediction_ids(len(rows))
        if self.prediction_log is not None:
            self.prediction_log.record(prediction_ids, served, matrix, best, probabilities)
        return [
            {
                "prediction_id": prediction_ids[position],
                "class_id": ids[index],
                "class_name": labels[index],
                "probabilities": dict(zip(labels, row, strict=True)),
                "model_name": name,
                "model_version": version,
                # each answer its own list: a Prediction built from it may be extended
                "warnings": [] if warnings is None else warnings[position],
            }
            for position, (index, row) in enumerate(
                zip(best.tolist(), probabilities.tolist(), strict=True)
            )
        ]
