"""Clear 4xx answers: every validation problem named by field, in plain words.

Answers have the shape ``{"message": "...", "detail": [...]}``: ``message`` is one line a
person can read; ``detail`` lists each problem with its ``field``, ``problem`` and pydantic
``type``. Input values are never echoed raw (NaN or a 1,000-row batch would not fit in JSON
or in a log line).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from prediction_api.schemas import FEATURE_SPECS, LEGACY_QUERY_NAMES
from wine_mlops.features import FEATURE_NAMES

_SPEC = {spec.name: spec for spec in FEATURE_SPECS}
_MAX_LISTED = 5


def _show(value: Any) -> str:
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


def describe(error: dict[str, Any], batch_limit: int | None = None) -> str:
    """One plain sentence for one pydantic error, naming the field."""
    loc = error.get("loc", ())
    where = _field(loc)
    name = str(loc[-1]) if loc else ""
    feature = LEGACY_QUERY_NAMES.get(name, name)
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
            return f"{where}: unknown parameter; expected only feature_1 to feature_13"
        return f"{where}: unknown field; expected only the 13 features ({', '.join(FEATURE_NAMES)})"
    if kind in ("float_type", "float_parsing"):
        return f"{where}: must be a number, got {_show(value)}"
    if kind == "finite_number":
        return f"{where}: must be a finite number, got {_show(value)}"
    if kind == "greater_than_equal":
        return f"{where}: must not be negative, got {_show(value)}"
    if kind == "less_than_equal":
        return (
            f"{where}: {_show(value)} is above {ctx.get('le')}{unit}, "
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
        return f"{where}: must be a JSON object with the 13 features, got {_show(value)}"
    if kind == "json_invalid":
        return f"body is not valid JSON ({ctx.get('error', 'syntax error')} at position {loc[-1]})"
    return f"{where}: {error.get('msg', 'invalid value')}"


def problems(errors: Sequence[Any], batch_limit: int | None = None) -> list[dict[str, str]]:
    """The ``detail`` items of a validation answer."""
    return [
        {
            "field": _field(e.get("loc", ())),
            "problem": describe(e, batch_limit),
            "type": str(e.get("type", "")),
        }
        for e in errors
    ]


def validation_response(errors: Sequence[Any], batch_limit: int | None = None) -> JSONResponse:
    """A 422 answer listing each problem; the message names the first few."""
    items = problems(errors, batch_limit)
    message = "; ".join(item["problem"] for item in items[:_MAX_LISTED])
    if len(items) > _MAX_LISTED:
        message += f"; and {len(items) - _MAX_LISTED} more problem(s)"
    return JSONResponse({"message": message, "detail": items}, status_code=422)


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """Any other error answer, in the same shape."""
    return JSONResponse({"message": message, "detail": message}, status, headers=headers)


def install_handlers(app: Any, batch_limit: int) -> None:
    """Registers the handlers that turn validation and HTTP errors into clear answers."""

    async def on_validation_error(_: Request, exc: Exception) -> JSONResponse:
        errors = exc.errors() if isinstance(exc, RequestValidationError) else []
        return validation_response(errors, batch_limit)

    async def on_http_error(_: Request, exc: Exception) -> JSONResponse:
        status = getattr(exc, "status_code", 500)
        detail = getattr(exc, "detail", "error")
        return error_response(status, str(detail), getattr(exc, "headers", None))

    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
