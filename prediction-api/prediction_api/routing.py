"""Routes whose JSON body is checked after routing, in the order HTTP expects.

The router answers first (404 for an unknown path, 405 with ``Allow`` for a method the path
does not take); only then is a route's body judged: 415 when it is not JSON, 413 when it is
larger than the limit, and 422 (FastAPI's validation) when its content is invalid.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.routing import APIRoute
from starlette.types import Message, Receive

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


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
                    return await handler(request)  # the server reads no more than declared
                return await handler(
                    Request(request.scope, _limited(request.receive, max_body_bytes))
                )

            return guarded

    return JsonBodyRoute
