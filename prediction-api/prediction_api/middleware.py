"""Pure ASGI middleware (cheaper than Starlette's ``BaseHTTPMiddleware`` on the hot path)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence

from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from prediction_api.metrics import ApiMetrics

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


async def _send_error(send: Send, status: int, message: str) -> None:
    body = json.dumps({"message": message, "detail": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestGuardMiddleware:
    """Rejects request bodies that are not JSON (415) or larger than a limit (413).

    The size is checked from ``Content-Length`` before anything is read, and again while a
    chunked body streams in, so a client cannot make the API buffer more than the limit.

    Args:
        app: The wrapped application.
        max_body_bytes: The largest body accepted.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        content_type = headers.get(b"content-type", b"").decode("latin-1")
        media_type = content_type.split(";", 1)[0].strip().lower()
        if media_type != "application/json" and not media_type.endswith("+json"):
            shown = f"{content_type!r}" if content_type else "no Content-Type"
            await _send_error(
                send, 415, f"the body must be JSON (Content-Type: application/json), got {shown}"
            )
            return
        limit = self.max_body_bytes
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _send_error(send, 413, f"the body has {int(declared)} bytes; at most {limit}")
            return

        received = 0

        async def counting_receive() -> Message:
            # FastAPI passes an HTTPException raised while it reads the body to the app's
            # exception handlers, which answer in the usual shape.
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, f"the body is larger than {limit} bytes")
            return message

        await self.app(scope, counting_receive, send)


class RequestMetricsMiddleware:
    """Counts and times every request by route template, method and status.

    Args:
        app: The wrapped application.
        metrics: Where to record.
        route_of: Finds the route template of a scope the router did not see (e.g. a request
            the guard rejected); ``<unmatched>`` when none fits, so labels stay bounded.
    """

    def __init__(self, app: ASGIApp, metrics: ApiMetrics, route_of: Callable[[Scope], str]) -> None:
        self.app = app
        self.metrics = metrics
        self.route_of = route_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        path, root_path = scope["path"], scope.get("root_path", "")

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or self.route_of(
                {"type": "http", "method": scope["method"], "path": path, "root_path": root_path}
            )
            self.metrics.observe_request(
                template, scope["method"], status, time.perf_counter() - started
            )


def route_finder(routes: Callable[[], Sequence[BaseRoute]]) -> Callable[[Scope], str]:
    """Builds a :class:`RequestMetricsMiddleware` ``route_of`` from an app's routes.

    Args:
        routes: Returns the app's routes when called (they are added after the middleware).
    """

    def route_of(scope: Scope) -> str:
        for route in routes():
            match, _ = route.matches(scope)
            if match is not Match.NONE:
                return str(getattr(route, "path", "<unmatched>"))
        return "<unmatched>"

    return route_of
