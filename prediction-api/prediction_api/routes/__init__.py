"""The API's routes, one router per concern, joined by :func:`build_router`.

- :mod:`~prediction_api.routes.predictions`: ``POST /predict``, ``POST /predict/batch``
- :mod:`~prediction_api.routes.legacy`: ``GET /predict/`` (the original form's query)
- :mod:`~prediction_api.routes.feedback`: ``POST /feedback``, ``POST /feedback/batch``
- :mod:`~prediction_api.routes.model`: ``GET /model``, ``GET /features``
- :mod:`~prediction_api.routes.operations`: ``GET /healthz``, ``/readyz``, ``/metrics``
- :mod:`~prediction_api.routes.form`: ``GET /``, the browser form
"""

from __future__ import annotations

from fastapi import APIRouter

from prediction_api.routes import feedback, form, legacy, model, operations, predictions
from prediction_api.settings import ApiSettings


def build_router(settings: ApiSettings) -> APIRouter:
    """Every route of the API, in the order the documentation lists them.

    Args:
        settings: The body limits of the prediction and feedback routes.
    """
    router = APIRouter()
    router.include_router(predictions.build_router(settings))
    router.include_router(legacy.router)
    router.include_router(feedback.build_router(settings))
    router.include_router(model.router)
    router.include_router(operations.router)
    router.include_router(form.router)
    return router
