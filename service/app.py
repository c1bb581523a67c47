"""The FastAPI app factory: one KnowledgeBase per app, built in the lifespan and kept on ``app.state``."""

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

from kb.config import Settings
from kb.knowledge import KnowledgeBase
from service.deps import get_caller, get_widget_caller
from service.errors import install_error_handlers
from service.feedback import FeedbackStore
from service.metrics import Metrics, MetricsMiddleware
from service.models import ErrorOut
from service.routes import ask, docs_view, documents, feedback, health, search, widget, wiki
from service.security import BodyLimitMiddleware, RateLimiter
from service.slackbot import mount_slack
from service.widget.tokens import WidgetTokens

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
    settings: Settings = app.state.settings
    # Raises IndexUnavailable naming the fix (`kbq ingest`) when there is no usable index: refuse to start.
    kb = await run_in_threadpool(KnowledgeBase.open, settings)
    app.state.kb = kb
    app.state.store = await run_in_threadpool(FeedbackStore, settings.feedback_db)
    app.state.metrics.index(len(kb.index.documents), len(kb.index.chunks))
    log.info("serving index %s (%d documents)", kb.version, len(kb.index.documents))
    yield
    app.state.store.close()


def create_app(settings: Settings) -> FastAPI:
    """Build the HTTP app for ``settings``; the index loads when the app starts, not here."""
    app = FastAPI(title="kbq", version="1.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.limiter = RateLimiter(settings.rate_limit_per_minute)
    install_error_handlers(app)
    app.state.widget_tokens = WidgetTokens.from_settings(settings)
    for module in (search, documents):  # /v1/*: API key and rate limit
        app.include_router(module.router, dependencies=[Depends(get_caller)], responses=ERRORS)
    for module in (ask, feedback):  # the same, or a widget token from an allowed origin
        app.include_router(module.router, dependencies=[Depends(get_widget_caller)], responses=ERRORS)
    app.include_router(widget.router, responses=ERRORS)
    app.include_router(health.router)
    app.include_router(wiki.router)
    app.include_router(docs_view.router)
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
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    mount_slack(app, settings)
    return app


def app_from_env() -> FastAPI:
    """For `uvicorn --factory service.app:app_from_env` (e.g. several workers): settings from KB_* variables."""
    return create_app(Settings.from_env())
