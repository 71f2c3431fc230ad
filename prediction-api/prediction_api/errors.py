"""One error shape: every error answer is an RFC 9457 problem document, built here.

Every 4xx and 5xx answer has the media type ``application/problem+json`` and the body::

    {"type": "about:blank", "title": "Unprocessable Content", "status": 422,
     "detail": "flavanoids: required field is missing",
     "errors": [{"field": "flavanoids", "problem": "flavanoids: required field is missing",
                 "type": "missing"}],
     "message": "flavanoids: required field is missing"}

``type`` is ``about:blank`` (the status code says what kind of problem it is) and ``title``
that status's phrase (RFC 9110); ``detail`` is one line a person can read. Invalid input
(422) adds ``errors``: each problem with its ``field``, a plain ``problem`` sentence and the
pydantic ``type``. ``message`` repeats ``detail`` for clients of the earlier error shape.
Input values are never echoed raw (NaN or a 1,000-row batch would not fit in JSON or in a
log line). :func:`install` registers the handlers (including those of the domain errors,
such as :class:`~prediction_api.predictor.NoModelLoadedError` → 503) and documents the shape
in OpenAPI; :func:`problem_responses` is what routes declare.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException as StarletteHTTPException

from prediction_api.predictor import NoModelLoadedError
from prediction_api.schemas import FEATURE_SPECS
from wine_mlops.features import FEATURE_NAMES

PROBLEM_MEDIA_TYPE = "application/problem+json"
_SPEC = {spec.name: spec for spec in FEATURE_SPECS}
_MAX_LISTED = 5
#: RFC 9110's phrases where Python 3.11's differ.
_TITLES = {413: "Content Too Large", 422: "Unprocessable Content"}
#: Seconds a client should wait before asking again while no model is loaded.
RETRY_AFTER_SECONDS = 5


class FieldError(BaseModel):
    """One problem of invalid input."""

    field: str = Field(
        description="Where: a feature (`ash`), a batch row's feature (`[3].ash`), a legacy "
        "query parameter (`feature_3`), or `body`",
        examples=["flavanoids"],
    )
    problem: str = Field(
        description="What is wrong, in plain words, naming the field",
        examples=["flavanoids: required field is missing"],
    )
    type: str = Field(description="pydantic's error type", examples=["missing"])


class Problem(BaseModel):
    """An error answer: RFC 9457 problem details."""

    type: str = Field(
        description="`about:blank`: the status code tells the kind of problem",
        examples=["about:blank"],
    )
    title: str = Field(description="The status code's phrase", examples=["Service Unavailable"])
    status: int = Field(ge=400, le=599, description="The HTTP status code", examples=[503])
    detail: str = Field(description="What went wrong, in one line")
    message: str = Field(
        description="The same as `detail`, for clients of the earlier error shape (deprecated)",
        json_schema_extra={"deprecated": True},
    )


class InvalidInputProblem(Problem):
    """A 422 answer: the problem details and every problem of the input, by field."""

    errors: list[FieldError] = Field(min_length=1, description="Each problem, by field")


class ProblemResponse(JSONResponse):
    """A JSON answer with the problem details' media type."""

    media_type = PROBLEM_MEDIA_TYPE


def title(status: int) -> str:
    """The RFC 9110 phrase of a status code (``Unprocessable Content`` for 422)."""
    try:
        return _TITLES.get(status) or HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem_response(
    status: int,
    detail: str,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> ProblemResponse:
    """The one builder of error answers.

    Args:
        status: The HTTP status code.
        detail: One line saying what went wrong.
        errors: The problems of invalid input, by field (422 only).
        headers: Extra headers (``Allow``, ``Retry-After``).
    """
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title(status),
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = errors
    body["message"] = detail
    return ProblemResponse(body, status, headers=headers)


def show_value(value: Any) -> str:
    """A client's value as an answer quotes it: its repr, cut at 40 characters (non-finite
    floats as JSON would name them)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value).replace("inf", "Infinity").replace("nan", "NaN")
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _field(loc: Sequence[str | int]) -> str:
    """``("body", 3, "alcohol")`` → ``[3].alcohol``; ``("query", "feature_1")`` → ``feature_1``."""
    parts = list(loc[1:]) if loc and loc[0] in ("body", "query") else list(loc)
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "body"


def describe(
    error: dict[str, Any],
    batch_limit: int | None = None,
    query_names: Mapping[str, str] | None = None,
) -> str:
    """One plain sentence for one pydantic error, naming the field.

    Args:
        error: One error of pydantic's ``errors()``.
        batch_limit: The largest batch, for the empty-batch message.
        query_names: Query parameter → feature name, for parameters named otherwise
            (``feature_3`` → ``ash``).
    """
    query_names = query_names or {}
    loc = error.get("loc", ())
    where = _field(loc)
    name = str(loc[-1]) if loc else ""
    feature = query_names.get(name, name)
    spec = _SPEC.get(feature)
    unit = f" {spec.unit}" if spec and spec.unit else ""
    if feature != name:
        where = f"{where} ({feature})"
    kind = error.get("type", "")
    value = error.get("input")
    ctx = error.get("ctx") or {}
    if kind == "missing":
        return f"{where}: required field is missing"
    if kind == "extra_forbidden":
        if loc and loc[0] == "query":
            known = list(query_names)
            expected = f"; expected only {known[0]} to {known[-1]}" if known else ""
            return f"{where}: unknown parameter{expected}"
        return f"{where}: unknown field; expected only the 13 features ({', '.join(FEATURE_NAMES)})"
    if kind in ("float_type", "float_parsing"):
        return f"{where}: must be a number, got {show_value(value)}"
    if kind == "finite_number":
        return f"{where}: must be a finite number, got {show_value(value)}"
    if kind == "greater_than_equal":
        return f"{where}: must not be negative, got {show_value(value)}"
    if kind == "less_than_equal":
        return (
            f"{where}: {show_value(value)} is above {ctx.get('le')}{unit}, "
            "beyond any physically possible value"
        )
    if kind == "too_short":
        return f"{where}: the batch is empty; send 1 to {batch_limit or 'the limit of'} wines"
    if kind == "too_long":
        return (
            f"{where}: the batch has {ctx.get('actual_length')} wines; "
            f"at most {ctx.get('max_length')} are allowed per request"
        )
    if kind == "list_type":
        return f"{where}: must be a JSON array of wine objects"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"{where}: must be a JSON object with the 13 features, got {show_value(value)}"
    if kind == "json_invalid":
        return f"body is not valid JSON ({ctx.get('error', 'syntax error')} at position {loc[-1]})"
    return f"{where}: {error.get('msg', 'invalid value')}"


def problems(
    errors: Sequence[Any],
    batch_limit: int | None = None,
    query_names: Mapping[str, str] | None = None,
) -> list[dict[str, str]]:
    """The ``errors`` items of an invalid-input answer (arguments as :func:`describe`'s)."""
    return [
        {
            "field": _field(e.get("loc", ())),
            "problem": describe(e, batch_limit, query_names),
            "type": str(e.get("type", "")),
        }
        for e in errors
    ]


def validation_response(
    errors: Sequence[Any],
    batch_limit: int | None = None,
    query_names: Mapping[str, str] | None = None,
) -> ProblemResponse:
    """A 422 answer listing each problem; ``detail`` names the first few."""
    items = problems(errors, batch_limit, query_names)
    detail = "; ".join(item["problem"] for item in items[:_MAX_LISTED])
    if len(items) > _MAX_LISTED:
        detail += f"; and {len(items) - _MAX_LISTED} more problem(s)"
    return problem_response(422, detail, errors=items)


#: What each error status means, as the OpenAPI document says it.
_MEANINGS = {
    400: "The body cannot be read (e.g. it is not UTF-8 text)",
    404: "No such endpoint",
    405: "The method is not allowed on this endpoint (`Allow` lists those that are)",
    413: "The body is larger than the limit (`WINE_MAX_BODY_BYTES`, 1 MB by default)",
    415: "The body is not JSON (`Content-Type: application/json` is required)",
    422: "Invalid input: `errors` names each field and its problem",
    500: "An unexpected error (the API log has the details)",
    503: "No model is loaded yet: retry after `Retry-After` seconds",
}
_HEADERS = {
    405: {"Allow": {"description": "The methods allowed", "schema": {"type": "string"}}},
    503: {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}},
}


def _content(status: int) -> dict[str, Any]:
    model = InvalidInputProblem if status == 422 else Problem
    return {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route that can answer these error statuses, documented.

    Args:
        *statuses: Error status codes, each one of those :data:`_MEANINGS` describes.
    """
    return {
        status: {
            "description": _MEANINGS[status],
            "content": _content(status),
            **({"headers": _HEADERS[status]} if status in _HEADERS else {}),
        }
        for status in statuses
    }


def _document(openapi: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """Wraps FastAPI's ``app.openapi`` to add the problem schemas (once, on first call)."""

    def with_problems() -> dict[str, Any]:
        document = openapi()
        components = document.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        if "Problem" not in schemas:
            _, defs = models_json_schema(
                [(Problem, "serialization"), (InvalidInputProblem, "serialization")],
                ref_template="#/components/schemas/{model}",
            )
            schemas.update(defs["$defs"])
            # FastAPI's own 422 shape is never answered: every route declares the problem.
            for unused in ("HTTPValidationError", "ValidationError"):
                schemas.pop(unused, None)
            components["responses"] = {
                "NotFound": {"description": _MEANINGS[404], "content": _content(404)},
                "MethodNotAllowed": {
                    "description": _MEANINGS[405],
                    "content": _content(405),
                    "headers": _HEADERS[405],
                },
            }
        return document

    return with_problems


def install(app: FastAPI, batch_limit: int, query_names: Mapping[str, str]) -> None:
    """Turns every error into a problem answer and documents the shape in ``app.openapi()``.

    Args:
        app: The application.
        batch_limit: The largest batch, for the empty-batch message.
        query_names: Query parameter → feature name (the legacy query's ``feature_N``).
    """

    async def on_validation_error(_: Request, exc: Exception) -> ProblemResponse:
        errors = exc.errors() if isinstance(exc, RequestValidationError) else []
        return validation_response(errors, batch_limit, query_names)

    async def on_no_model(_: Request, exc: Exception) -> ProblemResponse:
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
        return problem_response(503, str(exc), headers=headers)

    async def on_http_error(request: Request, exc: Exception) -> ProblemResponse:
        status = getattr(exc, "status_code", 500)
        headers = getattr(exc, "headers", None)
        detail = str(getattr(exc, "detail", "") or title(status))
        if status == 404 and detail == title(404):
            detail = "nothing at this address; the endpoints are listed at /docs"
        elif status == 405 and detail == title(405):
            allowed = (headers or {}).get("Allow", "")
            detail = f"{request.method[:20]} is not allowed here; allowed: {allowed}"
        return problem_response(status, detail, headers=headers)

    async def on_unexpected_error(_: Request, exc: Exception) -> ProblemResponse:
        # Starlette logs the exception with its traceback after this answer is sent.
        return problem_response(500, "an unexpected error; the API log has the details")

    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(NoModelLoadedError, on_no_model)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected_error)
    app.openapi = _document(app.openapi)  # type: ignore[method-assign]
