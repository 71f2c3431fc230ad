"""The API's documentation pages (Swagger UI at ``/docs``, ReDoc at ``/redoc``), offline.

FastAPI's own pages load their JavaScript and CSS from a CDN, so they stay blank on a machine
without internet. Here the pages load the built assets shipped by the ``fastapi-offline``
package (MIT), which the API serves itself under :data:`ASSETS_URL`: no page asks any other
host for anything (no fonts, no favicon, no online validator). ReDoc's bundle still links its
maker's logo from their CDN; the pages' Content-Security-Policy (:data:`CSP`) keeps the browser
from asking for it, or for anything else outside the API.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

#: Where the Swagger UI and ReDoc assets are served.
ASSETS_URL = "/docs-assets"
#: The assets on disk: ``swagger-ui-bundle.js``, ``swagger-ui.css``, ``redoc.standalone.js``,
#: ``favicon.png``.
ASSETS_DIR = Path(str(files("fastapi_offline").joinpath("static")))
DOCS_URL = "/docs"
REDOC_URL = "/redoc"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
#: The pages load from the API only: their inline start-up script, the styles both UIs inject,
#: inline SVG icons, and ReDoc's search worker (a blob).
CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "worker-src 'self' blob:",
        "connect-src 'self'",
        "frame-ancestors 'self'",
    ]
)


def _offline(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = CSP
    return page


def install(app: FastAPI) -> None:
    """Adds ``/docs``, ``/redoc`` and their assets to an app built with ``docs_url=None`` and
    ``redoc_url=None``.

    Args:
        app: The application; its title and ``openapi_url`` name the pages and their document.
    """
    openapi_url = app.openapi_url or "/openapi.json"
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-assets")

    def under_root(request: Request, path: str) -> str:
        return f"{request.scope.get('root_path', '')}{path}"

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        return _offline(
            get_swagger_ui_html(
                openapi_url=under_root(request, openapi_url),
                title=f"{app.title} - Swagger UI",
                oauth2_redirect_url=under_root(request, OAUTH2_REDIRECT_URL),
                swagger_js_url=under_root(request, f"{ASSETS_URL}/swagger-ui-bundle.js"),
                swagger_css_url=under_root(request, f"{ASSETS_URL}/swagger-ui.css"),
                swagger_favicon_url=under_root(request, f"{ASSETS_URL}/favicon.png"),
                swagger_ui_parameters={
                    "displayOperationId": True,
                    # Swagger UI would otherwise send the document to an online validator.
                    "validatorUrl": None,
                },
            )
        )

    @app.get(OAUTH2_REDIRECT_URL, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(REDOC_URL, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        return _offline(
            get_redoc_html(
                openapi_url=under_root(request, openapi_url),
                title=f"{app.title} - ReDoc",
                redoc_js_url=under_root(request, f"{ASSETS_URL}/redoc.standalone.js"),
                redoc_favicon_url=under_root(request, f"{ASSETS_URL}/favicon.png"),
                with_google_fonts=False,
            )
        )
