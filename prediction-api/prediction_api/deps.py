"""What the routes depend on, as ``Annotated[..., Depends(...)]`` aliases.

:func:`prediction_api.app.create_app` builds the parts once and keeps them in ``app.state``;
these dependencies hand them to the routes. The functions are ``async`` so that FastAPI calls
them on the event loop rather than in its thread pool (the request path stays short).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from prediction_api.metrics import ApiMetrics
from prediction_api.prediction_log import PredictionLog
from prediction_api.predictor import Predictor
from prediction_api.reference import ReferenceStats
from prediction_api.serving import ModelStore
from prediction_api.settings import ApiSettings


async def get_predictor(request: Request) -> Predictor:
    """The app's :class:`Predictor` (the served model's answers)."""
    predictor: Predictor = request.app.state.predictor
    return predictor


async def get_store(request: Request) -> ModelStore:
    """The app's :class:`ModelStore` (what is served, what was refused)."""
    store: ModelStore = request.app.state.store
    return store


async def get_settings(request: Request) -> ApiSettings:
    """The app's settings."""
    settings: ApiSettings = request.app.state.settings
    return settings


async def get_metrics(request: Request) -> ApiMetrics:
    """The app's Prometheus metrics."""
    metrics: ApiMetrics = request.app.state.metrics
    return metrics


async def get_reference(request: Request) -> ReferenceStats:
    """The training data's statistics."""
    reference: ReferenceStats = request.app.state.reference
    return reference


async def get_prediction_log(request: Request) -> PredictionLog | None:
    """The app's prediction log, or None when it is off (``WINE_MONITORING_DB_URL`` unset)."""
    prediction_log: PredictionLog | None = request.app.state.prediction_log
    return prediction_log


PredictorDep = Annotated[Predictor, Depends(get_predictor)]
StoreDep = Annotated[ModelStore, Depends(get_store)]
SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
MetricsDep = Annotated[ApiMetrics, Depends(get_metrics)]
ReferenceDep = Annotated[ReferenceStats, Depends(get_reference)]
PredictionLogDep = Annotated[PredictionLog | None, Depends(get_prediction_log)]
