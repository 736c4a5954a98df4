"""``/docs`` (Swagger UI) and ``/redoc`` served with their assets from this process.

FastAPI's built-in pages load Swagger UI, ReDoc, a favicon and fonts from CDNs, so they stay
blank on a laptop without network. Here the pages reference only ``/docs-assets/…``, served
from the files the ``fastapi-offline`` package ships (Swagger UI 5, ReDoc 2); Swagger UI's
validator badge (an image from a public validator service) is turned off, and a
Content-Security-Policy keeps both pages on this origin (ReDoc's bundle would otherwise fetch
its footer logo from a CDN).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, swagger_ui_default_parameters
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_PATH = "/docs-assets"
FAVICON = f"{ASSETS_PATH}/favicon.png"
_ASSETS_DIR = Path(str(files("fastapi_offline") / "static"))
# Both pages start their UI from an inline script; everything else comes from this origin.
_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; "
    "connect-src 'self'; frame-ancestors 'none'"
)


def install_api_docs(app: FastAPI) -> None:
    """Serve ``/docs`` and ``/redoc`` (the app must be built with ``docs_url=None`` and
    ``redoc_url=None``).

    The pages are module-level endpoints reading their app from the request: FastAPI keeps
    the endpoints it has seen in process-wide caches, so an endpoint closing over ``app``
    would keep every app ever built alive (the test suite builds hundreds)."""
    app.mount(ASSETS_PATH, StaticFiles(directory=_ASSETS_DIR), name="docs-assets")
    app.add_api_route("/docs", swagger_ui, include_in_schema=False)
    app.add_api_route("/redoc", redoc, include_in_schema=False)


async def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI on the app's own assets."""
    app = request.app
    return _own_origin_only(
        get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} — API docs",
            swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=FAVICON,
            swagger_ui_parameters={
                **swagger_ui_default_parameters,
                "validatorUrl": None,
                "persistAuthorization": True,
            },
        )
    )


async def redoc(request: Request) -> HTMLResponse:
    """ReDoc on the app's own assets."""
    app = request.app
    return _own_origin_only(
        get_redoc_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} — API reference",
            redoc_js_url=f"{ASSETS_PATH}/redoc.standalone.js",
            redoc_favicon_url=FAVICON,
            with_google_fonts=False,
        )
    )


def _own_origin_only(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = _CSP
    return page
