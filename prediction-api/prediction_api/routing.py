"""Routes whose JSON body is checked after routing, in the order HTTP expects.

The router answers first (404 for an unknown path, 405 with ``Allow`` for a method the path
does not take); only then is a route's body judged: 415 when it is not JSON, 413 when it is
larger than the limit, and 422 (FastAPI's validation) when its content is invalid.

A route marked with :func:`validates_raw_json` has its body validated by pydantic straight
from the raw bytes (``TypeAdapter.validate_json``: no Python objects for the JSON, about a
third of the time of FastAPI's ``json.loads`` then validation for a batch of 1,000). A body
that passes is handed to FastAPI already validated; one that does not goes FastAPI's own way,
so every error answer (422 and its ``errors``, 400) is exactly FastAPI's.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any, TypeVar

from fastapi import HTTPException, Request, Response
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError
from starlette.types import Message, Receive

Handler = Callable[[Request], Coroutine[Any, Any, Response]]
Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])

#: The attribute :func:`validates_raw_json` sets on an endpoint.
_RAW_JSON = "_validates_raw_json"


def validates_raw_json(endpoint: Endpoint) -> Endpoint:
    """Marks a route's endpoint whose JSON body is validated from the raw bytes.

    Only for a body type that JSON validation and Python validation treat alike (a strict
    model of floats: the tests compare the two on edge cases). Put it below the route's
    decorator.
    """
    setattr(endpoint, _RAW_JSON, True)
    return endpoint


def _raw_json_adapter(route: APIRoute) -> TypeAdapter[Any] | None:
    """The validator of a marked route's body: its type with the body's constraints (e.g.
    ``min_length``), as FastAPI validates it; None for a route that is not marked."""
    if route.body_field is None or not getattr(route.endpoint, _RAW_JSON, False):
        return None
    info = route.body_field.field_info
    body_type: Any = info.annotation
    if info.metadata:
        body_type = Annotated[(body_type, *info.metadata)]
    return TypeAdapter(body_type)


async def _validate_raw_json(request: Request, adapter: TypeAdapter[Any]) -> None:
    """Validates the body from its bytes; when it is valid, FastAPI gets the result as the
    request's JSON (a valid model instance passes FastAPI's validation as it is)."""
    try:
        body = await request.body()
    except HTTPException:
        raise  # 413: a chunked body went over the limit
    except Exception:
        return  # e.g. the client went away: FastAPI answers 400, as it always did
    try:
        value = adapter.validate_json(body)
    except ValidationError:
        return  # FastAPI parses and validates it again, and answers its usual error
    request._json = value


def is_json(content_type: str) -> bool:
    """Whether a ``Content-Type`` is JSON (``application/json`` or ``application/*+json``)."""
    media_type = content_type.partition(";")[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def _limited(receive: Receive, limit: int) -> Receive:
    received = 0

    async def limited_receive() -> Message:
        # FastAPI passes an HTTPException raised while it reads the body to the app's
        # exception handlers, which answer in the usual shape.
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise HTTPException(413, f"the body is larger than {limit} bytes")
        return message

    return limited_receive


def json_body_route(max_body_bytes: int) -> type[APIRoute]:
    """The route class of an app whose bodies are JSON of at most ``max_body_bytes``.

    Routes without a body are left as they are. A body's size is checked from
    ``Content-Length`` before anything is read, or counted while a chunked body streams in,
    so a client cannot make the API buffer more than the limit.

    Args:
        max_body_bytes: The largest body accepted.
    """

    class JsonBodyRoute(APIRoute):
        def get_route_handler(self) -> Handler:
            handler = super().get_route_handler()
            if self.body_field is None:
                return handler
            adapter = _raw_json_adapter(self)

            async def guarded(request: Request) -> Response:
                headers = request.headers
                content_type = headers.get("content-type", "")
                if not is_json(content_type):
                    shown = repr(content_type) if content_type else "no Content-Type"
                    raise HTTPException(
                        415, f"the body must be JSON (Content-Type: application/json), got {shown}"
                    )
                declared = headers.get("content-length")
                if declared is not None and declared.isdigit():
                    if int(declared) > max_body_bytes:
                        raise HTTPException(
                            413, f"the body has {int(declared)} bytes; at most {max_body_bytes}"
                        )
                    # the server reads no more than declared
                else:
                    request = Request(request.scope, _limited(request.receive, max_body_bytes))
                if adapter is not None:
                    await _validate_raw_json(request, adapter)
                return await handler(request)

            return guarded

    return JsonBodyRoute
