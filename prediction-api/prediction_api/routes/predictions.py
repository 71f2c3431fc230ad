"""``POST /predict`` and ``POST /predict/batch``: wines as JSON (the form posts here too).

Their bodies are checked in the order HTTP expects (:mod:`prediction_api.routing`): 415 when
not JSON, 413 when too large, then 422 for invalid content. No ``from __future__ import
annotations``: FastAPI must see the real annotations, including the batch type built from the
settings.
"""

from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Body, Response
from starlette.concurrency import run_in_threadpool

from prediction_api import errors
from prediction_api.deps import PredictorDep
from prediction_api.predictor import Predictor
from prediction_api.routing import json_body_route, validates_raw_json
from prediction_api.schemas import Prediction, WineFeatures
from prediction_api.serving import RUNTIME_ONNX
from prediction_api.settings import ApiSettings

#: Batches of more rows than this run in the thread pool (the model releases the GIL while it
#: works, so the event loop keeps reading other requests); smaller ones run on the event
#: loop, where onnxruntime takes microseconds and the trip to a thread would cost more. A
#: scikit-learn estimator (a version without ONNX, where scikit-learn is installed) takes
#: milliseconds a call: it always runs in the thread pool.
INLINE_ROWS = 100


def runs_inline(predictor: Predictor, rows: int) -> bool:
    """Whether ``rows`` wines are classified on the event loop rather than in the pool."""
    served = predictor.store.current
    return rows <= INLINE_ROWS and (served is None or served.runtime == RUNTIME_ONNX)


if TYPE_CHECKING:
    from prediction_api.schemas import WineBase as WineBody
else:  # FastAPI needs the generated model itself to validate and document it
    WineBody = WineFeatures


class JsonAnswer(Response):
    """An answer whose body is JSON already encoded."""

    media_type = "application/json"


def build_router(settings: ApiSettings) -> APIRouter:
    """The prediction routes, with the body limits of ``settings``.

    Args:
        settings: ``batch_limit`` (the most wines per batch) and ``max_body_bytes``.
    """
    router = APIRouter(
        tags=["predictions"],
        route_class=json_body_route(settings.max_body_bytes),
        responses=errors.problem_responses(400, 413, 415, 422, 503),
    )

    # The handlers answer with the JSON the predictor builds in one go: the response model
    # stays declared (it documents the answer) but FastAPI neither validates nor encodes it
    # again. Their bodies are validated from the raw bytes (validates_raw_json). One wine, or
    # a small batch, is classified on the event loop; a large batch in the thread pool (see
    # INLINE_ROWS).

    @router.post("/predict", summary="Classify one wine", response_model=Prediction)
    @validates_raw_json
    async def predict(wine: WineBody, predictor: PredictorDep) -> Response:
        rows = [wine.as_row()]
        if runs_inline(predictor, 1):
            return JsonAnswer(predictor.answers_json(rows, one=True))
        return JsonAnswer(await run_in_threadpool(predictor.answers_json, rows, True))

    @router.post(
        "/predict/batch",
        summary=f"Classify 1 to {settings.batch_limit} wines",
        response_model=list[Prediction],
    )
    @validates_raw_json
    async def predict_batch(
        wines: Annotated[list[WineBody], Body(min_length=1, max_length=settings.batch_limit)],
        predictor: PredictorDep,
    ) -> Response:
        rows = [wine.as_row() for wine in wines]
        if runs_inline(predictor, len(rows)):
            return JsonAnswer(predictor.answers_json(rows))
        return JsonAnswer(await run_in_threadpool(predictor.answers_json, rows))

    return router
