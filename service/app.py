"""The FastAPI app factory: one ``AppState`` per app (service/state.py), its knowledge base loaded in the
lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from kb.config import Settings
from kb.knowledge import KnowledgeBase
from service.deps import get_caller, get_widget_caller
from service.errors import install_error_handlers
from service.mcp.http import mcp_router
from service.metrics import MetricsMiddleware
from service.models import ErrorOut
from service.routes import (
    apidocs,
    ask,
    docs_view,
    documents,
    feedback,
    health,
    insights,
    search,
    widget,
    wiki,
)
from service.security import BodyLimitMiddleware
from service.slackbot import mount_slack
from service.state import AppState, app_state

log = logging.getLogger(__name__)
SLACK_BODY_BYTES = 1_000_000  # Slack's signed interaction payloads echo the whole answer message
STATIC = Path(__file__).resolve().parent / "static"
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut} for status in (401, 413, 422, 429, 503)
}
DESCRIPTION = (
    "Cited answers about AWS moving EC2 from Xen to a KVM-based hypervisor (C5, November 2017). "
    "Every sentence of an answer cites the exact passage it came from; when the material does not "
    'cover a question the service says so. Errors are `{"error": {"code", "message"}}`.'
)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    state = app_state(app)
    # Raises IndexUnavailable naming the fix (`kbq ingest`) when there is no usable index: refuse to start.
    await run_in_threadpool(state.open)
    log.info("serving index %s (%d documents)", state.kb.version, state.kb.counts()[0])
    yield
    state.close()


def create_app(settings: Settings, kb: KnowledgeBase | None = None) -> FastAPI:
    """Build the HTTP app for ``settings``; the index loads when the app starts, unless ``kb`` is given."""
    # FastAPI's own /docs, /redoc and /openapi.json are open and load Swagger from a CDN: routes/apidocs.py
    app = FastAPI(
        title="kbq",
        version="1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.kbq = state = AppState.build(settings, kb)
    install_error_handlers(app)
    for module in (search, documents):  # /v1/*: API key and rate limit
        app.include_router(module.router, dependencies=[Depends(get_caller)], responses=ERRORS)
    for module in (ask, feedback):  # the same, or a widget token from an allowed origin
        app.include_router(module.router, dependencies=[Depends(get_widget_caller)], responses=ERRORS)
    app.include_router(widget.router, responses=ERRORS)
    app.include_router(health.router)
    app.include_router(wiki.router)
    apidocs.install(app)  # /docs, /redoc, /openapi.json: before the source view's /docs/{doc_id}
    app.include_router(docs_view.router)
    app.include_router(insights.router)  # /admin/*: admin keys (KB_ADMIN_KEYS) only, never API keys
    app.include_router(mcp_router(settings))  # /mcp: the MCP streamable HTTP transport, API keys as /v1
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(
        BodyLimitMiddleware, max_bytes=settings.max_body_bytes, prefix_limits={"/slack/": SLACK_BODY_BYTES}
    )
    origins = [o for o in settings.cors_origins if o != "*"]
    if len(origins) != len(settings.cors_origins):
        log.warning("ignoring '*' in KB_CORS_ORIGINS: list the origins that may call the API")
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        )
    app.add_middleware(MetricsMiddleware, metrics=state.metrics)
    _trust_proxies(app, settings)
    mount_slack(app, settings)
    return app


def _trust_proxies(app: FastAPI, settings: Settings) -> None:
    """Believe X-Forwarded-For and X-Forwarded-Proto only from the peers in KB_TRUSTED_PROXIES (default: none,
    so a client's address is its TCP peer's, whatever headers it sends). Added last: it runs first."""
    proxies = [p for p in settings.trusted_proxies if p != "*"]
    if len(proxies) != len(settings.trusted_proxies):
        log.warning("ignoring '*' in KB_TRUSTED_PROXIES: list the proxies' addresses (or networks)")
    if proxies:
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=proxies)


def app_from_env() -> FastAPI:
    """For `uvicorn --factory service.app:app_from_env` (e.g. several workers): settings from KB_* variables."""
    return create_app(Settings.from_env())
