"""The FastAPI application, built by :func:`create_app` (nothing happens at import time).

No ``from __future__ import annotations`` here: FastAPI must see the endpoints' real
annotations, including the batch type built from the settings inside :func:`create_app`.
"""

import logging
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
from fastapi import Body, FastAPI, HTTPException, Query
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from prediction_api import docs, errors
from prediction_api.metrics import ApiMetrics
from prediction_api.middleware import RequestMetricsMiddleware, route_finder
from prediction_api.reference import ReferenceStats, load_reference_stats
from prediction_api.routing import json_body_route
from prediction_api.schemas import (
    FEATURE_SPECS,
    LEGACY_QUERY_NAMES,
    LegacyQuery,
    Prediction,
    RefusedVersion,
    ServedModelInfo,
    WineFeatures,
)

if TYPE_CHECKING:
    from prediction_api.schemas import WineBase as LegacyParams
    from prediction_api.schemas import WineBase as WineBody
else:  # FastAPI needs the generated models themselves to validate and document them
    WineBody = WineFeatures
    LegacyParams = LegacyQuery
from prediction_api.serving import ModelSource, ModelStore, ServedModel
from prediction_api.settings import ApiSettings

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
_LEGACY_POSITION = {name: key for key, name in LEGACY_QUERY_NAMES.items()}
#: The error answers of each kind of route (problem documents, see :mod:`prediction_api.errors`).
_NOT_READY = errors.problem_responses(503)
_PREDICT_JSON = errors.problem_responses(400, 413, 415, 422, 503)
_PREDICT_QUERY = errors.problem_responses(422, 503)
#: The groups of endpoints, in the order the documentation shows them.
OPENAPI_TAGS = [
    {
        "name": "predictions",
        "description": "Classify wines with the served model: one, a batch, or the original "
        "form's query.",
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


class PrometheusText(Response):
    """The Prometheus text exposition format."""

    media_type = CONTENT_TYPE_LATEST


class Predictor:
    """Turns validated rows into answers with the model served right now (the hot path).

    Args:
        store: Holds the served model.
        metrics: Counts predictions and out-of-range inputs.
        reference: The training data's ranges.
        settings: For the alias and model name in messages.
    """

    def __init__(
        self,
        store: ModelStore,
        metrics: ApiMetrics,
        reference: ReferenceStats,
        settings: ApiSettings,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.reference = reference
        self.settings = settings

    def served(self) -> ServedModel:
        """The model serving now.

        Raises:
            HTTPException: 503 while no model is loaded, with a reason fit for clients (no
                hosts, URLs or exception text: those are in the log).
        """
        served = self.store.current
        if served is None:
            reason = self.store.public_error or "the first load is in progress"
            raise HTTPException(
                503,
                f"no model loaded yet (models:/{self.settings.model_name}@"
                f"{self.settings.served_alias}): {reason}; retry shortly",
                headers={"Retry-After": "5"},
            )
        return served

    def predict(self, rows: list[list[float]]) -> tuple[ServedModel, np.ndarray, np.ndarray]:
        """Class index (into ``class_ids``) and probabilities of each row."""
        served = self.served()
        matrix = np.asarray(rows, dtype=np.float64)
        probabilities = served.predict_proba(matrix)
        best = probabilities.argmax(axis=1)
        self.metrics.observe_inputs(*self.reference.outside_counts(matrix))
        counts = Counter(best.tolist())
        for index, count in counts.items():
            self.metrics.predictions.labels(served.class_labels[index], served.ref.version).inc(
                count
            )
        return served, best, probabilities

    def answers(self, rows: list[list[float]]) -> list[dict[str, Any]]:
        """The JSON answers, one per row."""
        served, best, probabilities = self.predict(rows)
        labels, ids = served.class_labels, served.class_ids
        name, version = served.ref.name, served.ref.version
        return [
            {
                "class_id": ids[index],
                "class_name": labels[index],
                "probabilities": dict(zip(labels, row, strict=True)),
                "model_name": name,
                "model_version": version,
            }
            for index, row in zip(best.tolist(), probabilities.tolist(), strict=True)
        ]


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
        The application; ``app.state.store`` holds the :class:`ModelStore`.
    """
    settings = settings or ApiSettings()
    if source is None:
        from prediction_api.registry import MlflowRegistrySource

        source = MlflowRegistrySource(settings)
    reference = reference or load_reference_stats()
    metrics = metrics or ApiMetrics()
    store = ModelStore(source, settings.class_names, listener=metrics)
    predictor = Predictor(store, metrics, reference, settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        store.start(
            settings.watch_interval_seconds,
            settings.connect_attempts,
            settings.connect_max_backoff_seconds,
        )
        yield
        store.stop()

    app = FastAPI(
        title="Wine classifier API",
        version="1.0.0",
        summary="Serves the MLflow registry's champion wine classifier.",
        description=(
            f"Predicts the cultivar of a wine from its 13 measurements with "
            f"`models:/{settings.model_name}@{settings.served_alias}`; a new version behind "
            f"the alias is picked up within {settings.watch_interval_seconds:g} s, without "
            "restart.\n\nEvery error answer is an RFC 9457 problem document "
            "(`application/problem+json`: `type`, `title`, `status`, `detail`), and invalid "
            "input (422) lists each field and its problem in `errors`. Checks run in this "
            "order: unknown path 404, method not allowed 405 (with `Allow`), body not JSON "
            "415, body too large 413, invalid input 422."
        ),
        lifespan=lifespan,
        openapi_tags=OPENAPI_TAGS,
        generate_unique_id_function=operation_id,
        docs_url=None,  # served by docs.install, from the API's own copy of the assets
        redoc_url=None,
    )
    app.state.store = store
    app.state.metrics = metrics
    app.state.settings = settings
    errors.install(app, settings.batch_limit)
    app.router.route_class = json_body_route(settings.max_body_bytes)
    app.add_middleware(
        RequestMetricsMiddleware, metrics=metrics, route_of=route_finder(lambda: app.routes)
    )

    @app.get("/healthz", tags=["operations"], summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="Readiness: a model is loaded",
        responses=_NOT_READY,
    )
    async def readyz() -> dict[str, str]:
        served = predictor.served()
        return {
            "status": "ready",
            "model_name": served.ref.name,
            "model_version": served.ref.version,
        }

    @app.post(
        "/predict",
        tags=["predictions"],
        summary="Classify one wine",
        response_model=Prediction,
        responses=_PREDICT_JSON,
    )
    def predict(wine: WineBody) -> JSONResponse:
        return JSONResponse(predictor.answers([wine.as_row()])[0])

    @app.post(
        "/predict/batch",
        tags=["predictions"],
        summary=f"Classify 1 to {settings.batch_limit} wines",
        response_model=list[Prediction],
        responses=_PREDICT_JSON,
    )
    def predict_batch(
        wines: Annotated[
            list[WineBody],
            Body(min_length=1, max_length=settings.batch_limit),
        ],
    ) -> JSONResponse:
        return JSONResponse(predictor.answers([wine.as_row() for wine in wines]))

    @app.get(
        "/predict/",
        tags=["predictions"],
        summary="Classify one wine from the original form's query (plain-text class id)",
        response_class=PlainTextResponse,
        responses={
            200: {"content": {"text/plain": {"schema": {"type": "string", "pattern": "^[0-9]+$"}}}},
            **_PREDICT_QUERY,
        },
    )
    def predict_legacy(query: Annotated[LegacyParams, Query()]) -> Response:
        served, best, _ = predictor.predict([query.as_row()])
        return PlainTextResponse(str(served.class_ids[int(best[0])]))

    @app.get(
        "/model",
        tags=["model"],
        summary="What is served: version, run, test metrics, load time",
        response_model=ServedModelInfo,
        responses=_NOT_READY,
    )
    async def model() -> ServedModelInfo:
        served = predictor.served()
        refusal = store.refused
        return ServedModelInfo(
            model_name=served.ref.name,
            model_version=served.ref.version,
            alias=served.ref.alias,
            run_id=served.ref.run_id,
            model_family=served.ref.tags.get("model_family"),
            metrics=served.metrics,
            loaded_at=served.loaded_at.isoformat(timespec="seconds"),
            source=served.ref.source,
            refused=RefusedVersion(
                version=refusal.ref.version, kind=refusal.kind, reason=refusal.reason
            )
            if refusal
            else None,
        )

    @app.get("/features", tags=["model"], summary="The feature schema, training ranges, samples")
    async def features() -> dict[str, Any]:
        return {
            "features": [
                {
                    "name": spec.name,
                    "query_name": _LEGACY_POSITION[spec.name],
                    "label": spec.label,
                    "unit": spec.unit,
                    "training_min": float(reference.minimum[i]),
                    "training_max": float(reference.maximum[i]),
                    "training_mean": round(float(reference.mean[i]), 3),
                    "upper_limit": spec.upper_limit,
                }
                for i, spec in enumerate(FEATURE_SPECS)
            ],
            "samples": [
                {
                    "class_id": class_id,
                    "class_name": settings.class_name(class_id),
                    "values": values,
                }
                for class_id, values in sorted(reference.typical.items())
            ],
            "batch_limit": settings.batch_limit,
        }

    @app.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics (text exposition format)",
        response_class=PrometheusText,
    )
    async def prometheus_metrics() -> PrometheusText:
        return PrometheusText(generate_latest(metrics.registry))

    @app.get("/", include_in_schema=False)
    async def form() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    docs.install(app)
    return app
