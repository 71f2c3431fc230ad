"""Pure ASGI middleware (cheaper than Starlette's ``BaseHTTPMiddleware`` on the hot path)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from prediction_api.metrics import ApiMetrics


class RequestMetricsMiddleware:
    """Counts and times every request by route template, method and status, and keeps
    ``wine_api_requests_in_progress`` up to date.

    A scrape of the metrics path is counted and timed like any request, but not in the
    in-progress gauge: the scrape that reads the gauge would otherwise always see itself.

    Args:
        app: The wrapped application.
        metrics: Where to record.
        route_of: Finds the route template of a scope the router did not match (e.g. an
            unknown path); ``<unmatched>`` when none fits, so labels stay bounded.
        metrics_path: The path Prometheus scrapes.
    """

    def __init__(
        self,
        app: ASGIApp,
        metrics: ApiMetrics,
        route_of: Callable[[Scope], str],
        metrics_path: str = "/metrics",
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.route_of = route_of
        self.metrics_path = metrics_path

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

        in_progress = None if path == self.metrics_path else self.metrics.in_progress
        if in_progress is not None:
            in_progress.inc()
        try:
            await self.app(scope, receive, recording_send)
        finally:
            if in_progress is not None:
                in_progress.dec()
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
