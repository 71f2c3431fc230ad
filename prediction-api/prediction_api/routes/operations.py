"""For orchestrators and monitoring: ``/healthz`` (live), ``/readyz`` (a model is loaded),
``/metrics`` (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from prediction_api import errors
from prediction_api.deps import MetricsDep, PredictorDep
from prediction_api.schemas import Readiness

router = APIRouter(tags=["operations"])


class PrometheusText(Response):
    """The Prometheus text exposition format."""

    media_type = CONTENT_TYPE_LATEST


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: a model is loaded",
    responses=errors.problem_responses(503),
)
async def readyz(predictor: PredictorDep) -> Readiness:
    served = predictor.served()
    return Readiness(status="ready", model_name=served.ref.name, model_version=served.ref.version)


@router.get(
    "/metrics",
    summary="Prometheus metrics (text exposition format)",
    # Documented as plain text; the answer names the exposition format's version too.
    response_class=PlainTextResponse,
    responses={200: {"description": "The metrics, in Prometheus's text exposition format"}},
)
async def prometheus_metrics(metrics: MetricsDep) -> PrometheusText:
    return PrometheusText(generate_latest(metrics.registry))
