"""``POST /feedback`` and ``POST /feedback/batch``: the true class of wines the API classified.

Each answer of ``/predict`` and ``/predict/batch`` carries a ``prediction_id``; once the
wine's true cultivar is known, a client sends it here. The label is stored beside the logged
prediction (docs/monitoring.md), where the live accuracy is computed from. The database work
runs in the prediction log's own small thread pool, never on the event loop.

Answers: 200 with what became of each label (a repeat of the same label changes nothing:
``recorded: false``), 404 for an id the log does not hold (after this worker's queue is
written and, with several workers, one flush interval for the others'), 409 for another class
than the one recorded before, 422 for an invalid body (problem document, as everywhere), 503
when the log is off or its database cannot be reached. A batch is recorded all or none.

No ``from __future__ import annotations``: FastAPI must see the real annotations, including
the batch type built from the settings.
"""

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError

from prediction_api import errors
from prediction_api.deps import PredictionLogDep
from prediction_api.errors import show_value
from prediction_api.prediction_log import (
    ConflictingLabelError,
    LogUnavailableError,
    PredictionLog,
    UnknownPredictionError,
)
from prediction_api.routing import Handler, json_body_route
from prediction_api.schemas import Feedback, FeedbackResult
from prediction_api.settings import ApiSettings

#: Seconds a client should wait before sending feedback again while the database is down.
RETRY_AFTER_SECONDS = 5
#: What feedback answers while ``WINE_MONITORING_DB_URL`` is unset.
LOG_OFF = (
    "the prediction log is off (WINE_MONITORING_DB_URL is not set): feedback cannot be recorded"
)
_FIELDS = "prediction_id and true_class_id"
_EXAMPLE_ID = "3f2b8c1e-5d4a-4e7b-9c2d-1a0b9e8f7d6c"


def _problem(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    schema = {"$ref": "#/components/schemas/Problem"}
    answer: dict[str, Any] = {
        "description": description,
        "content": {errors.PROBLEM_MEDIA_TYPE: {"schema": schema}},
    }
    if headers:
        answer["headers"] = headers
    return answer


RESPONSES: dict[int | str, dict[str, Any]] = {
    **errors.problem_responses(400, 413, 415, 422),
    404: _problem(
        "No logged prediction has this id (unknown, older than the retention period, or "
        "logged while the prediction log was failing): nothing is recorded"
    ),
    409: _problem(
        "Another true class was recorded for this prediction before (a label is never "
        "changed): nothing is recorded"
    ),
    503: _problem(
        "The prediction log is off (`WINE_MONITORING_DB_URL` unset), or its database cannot "
        "be reached: nothing is recorded",
        {
            "Retry-After": {
                "description": "Seconds to wait (when the database is down)",
                "schema": {"type": "integer"},
            }
        },
    ),
}


def describe(error: dict[str, Any], batch_limit: int) -> str | None:
    """A plain sentence for an error of a feedback body, or None where the API's usual
    sentence fits (:func:`prediction_api.errors.describe`)."""
    loc = error.get("loc", ())
    name = str(loc[-1]) if loc else ""
    kind = error.get("type", "")
    value = error.get("input")
    where = errors.problems([error])[0]["field"]
    if kind == "extra_forbidden":
        return f"{where}: unknown field; expected only {_FIELDS}"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"{where}: must be a JSON object with {_FIELDS}, got {show_value(value)}"
    if kind == "list_type":
        return f"{where}: must be a JSON array of objects with {_FIELDS}"
    if kind == "too_short":
        return f"{where}: the batch is empty; send 1 to {batch_limit} labels"
    if kind == "too_long":
        return (
            f"{where}: the batch has {(error.get('ctx') or {}).get('actual_length')} labels; "
            f"at most {batch_limit} are allowed per request"
        )
    if kind == "missing":
        return None
    if name == "prediction_id":
        return (
            f"{where}: must be the prediction_id of an answer (a UUID such as {_EXAMPLE_ID}), "
            f"got {show_value(value)}"
        )
    if name == "true_class_id":
        return f"{where}: must be a class id, 0, 1 or 2 (a JSON integer), got {show_value(value)}"
    return None


def validation_response(problems: Any, batch_limit: int) -> Response:
    """A 422 problem answer in the API's usual shape, its sentences about feedback."""
    items = errors.problems(problems, batch_limit)
    for item, error in zip(items, problems, strict=True):
        item["problem"] = describe(error, batch_limit) or item["problem"]
    detail = "; ".join(item["problem"] for item in items[:5])
    if len(items) > 5:
        detail += f"; and {len(items) - 5} more problem(s)"
    return errors.problem_response(422, detail, errors=items)


def feedback_route(max_body_bytes: int, batch_limit: int) -> type:
    """The route class of the feedback routes: JSON bodies as the prediction routes take
    them (415, 413), and invalid ones answered in words about feedback (422)."""

    class FeedbackRoute(json_body_route(max_body_bytes)):  # type: ignore[misc]
        def get_route_handler(self) -> Handler:
            handler = super().get_route_handler()

            async def answered(request: Request) -> Response:
                try:
                    return await handler(request)
                except RequestValidationError as exc:
                    return validation_response(exc.errors(), batch_limit)

            return answered

    return FeedbackRoute


async def record(
    prediction_log: PredictionLog | None, items: list[Feedback]
) -> list[FeedbackResult]:
    """Records the labels, or raises the HTTP error that says why not."""
    if prediction_log is None:
        raise HTTPException(503, LOG_OFF)
    pairs = [(item.prediction_id.lower(), item.true_class_id) for item in items]
    timeout = 2 * prediction_log.flush_seconds + 10
    try:
        labelled = await prediction_log.label_async(pairs, timeout)
    except UnknownPredictionError as exc:
        raise HTTPException(404, str(exc)) from None
    except ConflictingLabelError as exc:
        raise HTTPException(409, str(exc)) from None
    except LogUnavailableError as exc:
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
        raise HTTPException(503, f"{exc}; retry later", headers=headers) from None
    return [FeedbackResult(**asdict(result)) for result in labelled]


def build_router(settings: ApiSettings) -> APIRouter:
    """The feedback routes, with the body limits of ``settings``.

    Args:
        settings: ``batch_limit`` (the most labels per batch) and ``max_body_bytes``.
    """
    router = APIRouter(
        tags=["feedback"],
        route_class=feedback_route(settings.max_body_bytes, settings.batch_limit),
        responses=RESPONSES,
    )

    @router.post(
        "/feedback",
        summary="Record the true class of a classified wine",
        description="Send the `prediction_id` of an answer and the wine's true class id once "
        "it is known. The label is stored with the logged prediction; the live accuracy is "
        "computed from such labels. Sending the same label again changes nothing "
        "(`recorded: false`); another class for a labelled prediction is refused (409).",
        response_model=FeedbackResult,
        responses={
            200: {
                "content": {
                    "application/json": {
                        "example": {
                            "prediction_id": _EXAMPLE_ID,
                            "true_class_id": 1,
                            "predicted_class_id": 1,
                            "correct": True,
                            "recorded": True,
                        }
                    }
                }
            }
        },
    )
    async def feedback(item: Feedback, prediction_log: PredictionLogDep) -> FeedbackResult:
        (result,) = await record(prediction_log, [item])
        return result

    @router.post(
        "/feedback/batch",
        summary=f"Record the true classes of 1 to {settings.batch_limit} classified wines",
        description="A list of what `POST /feedback` takes; the answer lists what became of "
        "each, in order. All or none: one unknown id (404) or one conflicting label (409) "
        "and nothing is recorded.",
        response_model=list[FeedbackResult],
    )
    async def feedback_batch(
        items: Annotated[list[Feedback], Body(min_length=1, max_length=settings.batch_limit)],
        prediction_log: PredictionLogDep,
    ) -> list[FeedbackResult]:
        return await record(prediction_log, items)

    return router
