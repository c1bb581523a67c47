"""The API's own documentation: /openapi.json, Swagger UI at /docs and ReDoc at /redoc, with their scripts
served by kbq (from the fastapi-offline package), so the pages work on an intranet with no CDN.

With API keys configured the three need a key, like /metrics, unless KB_PUBLIC_ENDPOINTS lists them.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from service.deps import open_or_keyed

ASSETS = "/api-docs"  # Swagger UI and ReDoc files
ASSET_DIR = Path(fastapi_offline.__file__).resolve().parent / "static"
TITLE = "kbq API"

router = APIRouter(include_in_schema=False, dependencies=[Depends(open_or_keyed("docs"))])


@router.get("/openapi.json")
def openapi(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@router.get("/docs")
def swagger(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    return get_swagger_ui_html(
        openapi_url=f"{root}/openapi.json",
        title=TITLE,
        swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{root}{ASSETS}/favicon.png",
    )


@router.get("/redoc")
def redoc(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    return get_redoc_html(
        openapi_url=f"{root}/openapi.json",
        title=TITLE,
        redoc_js_url=f"{root}{ASSETS}/redoc.standalone.js",
        redoc_favicon_url=f"{root}{ASSETS}/favicon.png",
        with_google_fonts=False,
    )


def install(app: FastAPI) -> None:
    """Add the docs routes and their files; build the app with ``docs_url``, ``redoc_url`` and
    ``openapi_url`` None so FastAPI's own, open, CDN-loading ones are not there too."""
    app.include_router(router)
    app.mount(ASSETS, StaticFiles(directory=ASSET_DIR), name="api-docs")
