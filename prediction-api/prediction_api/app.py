"""The FastAPI application, built by :func:`create_app` (nothing happens at import time).

The routes live in :mod:`prediction_api.routes`, one router per concern; they reach the
parts built here through :mod:`prediction_api.deps`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles

from prediction_api import docs, errors, routes
from prediction_api.metrics import ApiMetrics
from prediction_api.middleware import RequestMetricsMiddleware, route_finder
from prediction_api.prediction_log import build_prediction_log
from prediction_api.predictor import Predictor
from prediction_api.quality import build_quality_monitor
from prediction_api.reference import ReferenceStats, load_reference_stats
from prediction_api.routes.form import STATIC_DIR
from prediction_api.routes.legacy import QUERY_NAMES
from prediction_api.serving import ModelSource, ModelStore
from prediction_api.settings import ApiSettings

#: The groups of endpoints, in the order the documentation shows them.
OPENAPI_TAGS = [
    {
        "name": "predictions",
        "description": "Classify wines with the served model: one, a batch, or the original "
        "form's query.",
    },
    {
        "name": "feedback",
        "description": "Tell the API the true class of a wine it classified: the live "
        "accuracy of the monitoring loop is computed from it.",
    },
    {
        "name": "model",
        "description": "What is served: the model version and its metrics, the features and "
        "their training ranges.",
    },
    {
        "name": "operations",
        "description": "For orchestrators and monitoring: liveness, readiness, Prometheus metrics.",
    },
]


def operation_id(route: APIRoute) -> str:
    """An endpoint's OpenAPI ``operationId``: its function's name (``predict``,
    ``predict_batch``, …) rather than FastAPI's path-and-method compound."""
    return route.name


def describe(settings: ApiSettings) -> str:
    """The API's description on its documentation pages."""
    return (
        f"Predicts the cultivar of a wine from its 13 measurements with "
        f"`models:/{settings.model_name}@{settings.served_alias}`; a new version behind "
        f"the alias is picked up within {settings.watch_interval_seconds:g} s, without "
        "restart.\n\nEvery error answer is an RFC 9457 problem document "
        "(`application/problem+json`: `type`, `title`, `status`, `detail`), and invalid "
        "input (422) lists each field and its problem in `errors`. Checks run in this "
        "order: unknown path 404, method not allowed 405 (with `Allow`), body not JSON "
        "415, body too large 413, invalid input 422."
    )


def create_app(
    settings: ApiSettings | None = None,
    source: ModelSource | None = None,
    reference: ReferenceStats | None = None,
    metrics: ApiMetrics | None = None,
) -> FastAPI:
    """Builds the prediction API.

    The watcher thread (first load included) starts with the app's lifespan and stops with
    it; building the app loads nothing from MLflow.

    Args:
        settings: The settings; read from the environment when None.
        source: Where models come from; the MLflow registry of ``settings`` when None.
        reference: Training-data statistics; scikit-learn's wine data when None.
        metrics: The metrics; a new private registry when None.

    Returns:
        The application; ``app.state`` holds its parts (``store``, ``predictor``,
        ``metrics``, ``settings``, ``reference``, ``prediction_log`` and ``quality``, its
        live quality monitor: None when the log is off), which the routes get through
        :mod:`prediction_api.deps`.
    """
    settings = settings or ApiSettings()
    if source is None:
        from prediction_api.registry import MlflowRegistrySource

        source = MlflowRegistrySource(settings)
    reference = reference or load_reference_stats()
    metrics = metrics or ApiMetrics()
    store = ModelStore(source, settings.class_names, listener=metrics)
    model_uri = f"models:/{settings.model_name}@{settings.served_alias}"
    prediction_log = build_prediction_log(settings, metrics)
    quality = (
        build_quality_monitor(settings, prediction_log, store, metrics)
        if prediction_log is not None
        else None
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        store.start(
            settings.watch_interval_seconds,
            settings.connect_attempts,
            settings.connect_max_backoff_seconds,
        )
        if prediction_log is not None:
            prediction_log.start()
        if quality is not None:
            quality.start()
        yield
        if quality is not None:
            quality.stop()
        if prediction_log is not None:
            prediction_log.stop()
        store.stop()

    app = FastAPI(
        title="Wine classifier API",
        version="1.0.0",
        summary="Serves the MLflow registry's champion wine classifier.",
        description=describe(settings),
        lifespan=lifespan,
        openapi_tags=OPENAPI_TAGS,
        generate_unique_id_function=operation_id,
        docs_url=None,  # served by docs.install, from the API's own copy of the assets
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.reference = reference
    app.state.store = store
    app.state.prediction_log = prediction_log
    app.state.quality = quality
    app.state.predictor = Predictor(store, metrics, model_uri, prediction_log)
    errors.install(app, settings.batch_limit, QUERY_NAMES)
    app.add_middleware(
        RequestMetricsMiddleware, metrics=metrics, route_of=route_finder(lambda: app.routes)
    )
    app.include_router(routes.build_router(settings))
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    docs.install(app)
    return app
