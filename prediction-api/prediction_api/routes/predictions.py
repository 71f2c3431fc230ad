"""``POST /predict`` and ``POST /predict/batch``: wines as JSON (the form posts here too).

Their bodies are checked in the order HTTP expects (:mod:`prediction_api.routing`): 415 when
not JSON, 413 when too large, then 422 for invalid content. No ``from __future__ import
annotations``: FastAPI must see the real annotations, including the batch type built from the
settings.
"""

from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Body
from starlette.concurrency import run_in_threadpool

from prediction_api import errors
from prediction_api.deps import PredictorDep
from prediction_api.routing import json_body_route
from prediction_api.schemas import Prediction, WineFeatures
from prediction_api.settings import ApiSettings

if TYPE_CHECKING:
    from prediction_api.schemas import WineBase as WineBody
else:  # FastAPI needs the generated model itself to validate and document it
    WineBody = WineFeatures


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

    # The model runs in the thread pool, the answer is shaped on the event loop: a synchronous
    # endpoint would have FastAPI check its return value in a second thread-pool trip (about
    # 0.1 ms a request, measured in process).

    @router.post("/predict", summary="Classify one wine")
    async def predict(wine: WineBody, predictor: PredictorDep) -> Prediction:
        (answer,) = await run_in_threadpool(predictor.answers, [wine.as_row()])
        return answer

    @router.post("/predict/batch", summary=f"Classify 1 to {settings.batch_limit} wines")
    async def predict_batch(
        wines: Annotated[list[WineBody], Body(min_length=1, max_length=settings.batch_limit)],
        predictor: PredictorDep,
    ) -> list[Prediction]:
        return await run_in_threadpool(predictor.answers, [wine.as_row() for wine in wines])

    return router
