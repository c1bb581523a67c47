"""Dependencies shared by the routes, as ``Annotated`` aliases: the one place handlers get their parts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from kb.config import Settings
from kb.knowledge import KnowledgeBase
from service.auth import authorise
from service.errors import ApiError
from service.feedback import FeedbackStore
from service.metrics import Metrics
from service.models import AskRequest
from service.state import AppState, app_state, get_state

bearer = HTTPBearer(auto_error=False, description="One of the service's API keys, when it has any.")
StateDep = Annotated[AppState, Depends(get_state)]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def get_settings(state: StateDep) -> Settings:
    return state.settings


def get_kb(state: StateDep) -> KnowledgeBase:
    """The knowledge base, after swapping in a newer index if `kbq ingest` wrote one (a cheap check)."""
    return state.knowledge()


def get_store(state: StateDep) -> FeedbackStore:
    return state.store


def get_metrics(state: StateDep) -> Metrics:
    return state.metrics


async def get_caller(request: Request, credentials: Credentials) -> str:
    """An API key when keys are configured; the caller (its rate-limit bucket), once charged."""
    presented = credentials.credentials if credentials else None
    return authorise(app_state(request.app), request, presented)


async def get_widget_caller(request: Request, credentials: Credentials) -> str:
    """Like ``get_caller``, but a widget token (``Authorization: Bearer kbqw1.…``) also passes when it is
    valid and the request comes from a page of the token's origin (its ``Origin`` header)."""
    presented = credentials.credentials if credentials else None
    return authorise(app_state(request.app), request, presented, token=presented)


def open_or_keyed(endpoint: str) -> Callable[[Request, HTTPAuthorizationCredentials | None], None]:
    """A dependency for the service's own pages (``docs``: /docs, /redoc, /openapi.json; ``metrics``):
    open without API keys or when KB_PUBLIC_ENDPOINTS lists ``endpoint``, otherwise a key, as for /v1."""

    def check(request: Request, credentials: Credentials) -> None:
        state = app_state(request.app)
        if state.settings.api_keys and endpoint not in state.settings.public_endpoints:
            authorise(state, request, credentials.credentials if credentials else None)

    return check


SettingsDep = Annotated[Settings, Depends(get_settings)]


def checked_ask(body: AskRequest, settings: SettingsDep) -> AskRequest:
    """The request, once its question is known not to be too long (kb says when it is empty)."""
    limit = settings.max_question_chars
    if len(body.question) > limit:
        raise ApiError(
            422,
            "question_too_long",
            f"the question is {len(body.question)} characters; the limit "
            f"is {limit}. Ask about one thing at a time, in fewer words.",
        )
    return body


KnowledgeDep = Annotated[KnowledgeBase, Depends(get_kb)]
StoreDep = Annotated[FeedbackStore, Depends(get_store)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
AskBody = Annotated[AskRequest, Depends(checked_ask)]
