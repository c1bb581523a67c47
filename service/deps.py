"""Dependencies shared by the routes, as ``Annotated`` aliases: the one place handlers get their parts."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from kb.answer import MAX_QUESTION_CHARS, check_question
from kb.config import Settings
from kb.knowledge import KnowledgeBase
from kb.store import IndexUnavailable
from service.errors import ApiError
from service.feedback import FeedbackStore
from service.metrics import Metrics
from service.models import AskRequest
from service.security import key_id, retry_after, valid_key
from service.widget.tokens import TokenError, WidgetTokens, is_widget_token

log = logging.getLogger(__name__)
bearer = HTTPBearer(auto_error=False, description="One of the service's API keys, when it has any.")


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_kb(request: Request, settings: SettingsDep) -> KnowledgeBase:
    """The knowledge base, after swapping in a newer index if `kbq ingest` wrote one (a cheap check)."""
    kb: KnowledgeBase = request.app.state.kb
    try:
        if kb.reload_if_changed(min_interval=settings.reload_interval):
            request.app.state.metrics.index(len(kb.index.documents), len(kb.index.chunks))
    except IndexUnavailable as exc:  # keep serving the index we have
        log.warning("new index not loaded, still serving %s: %s", kb.version, exc)
    return kb


def get_store(request: Request) -> FeedbackStore:
    return request.app.state.store


def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


def _charge(request: Request, caller: str) -> None:
    """Spend one of the caller's rate-limit tokens, or answer 429."""
    wait = request.app.state.limiter.take(caller)
    if wait:
        raise ApiError(
            429,
            "rate_limited",
            f"too many requests; try again in {retry_after(wait)} s",
            {"Retry-After": retry_after(wait)},
        )


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, {"WWW-Authenticate": "Bearer"})


def _client_host(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def get_caller(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> str:
    """Check the API key (when keys are configured) and charge the caller's rate-limit bucket.

    The caller is the key when one was accepted, else the client address; refused attempts are charged too,
    so guessing keys is rate limited like anything else.
    """
    settings: Settings = request.app.state.settings
    presented = credentials.credentials if credentials else None
    accepted = not settings.api_keys or valid_key(presented, settings.api_keys)
    host = _client_host(request)
    caller = key_id(presented) if accepted and presented and settings.api_keys else f"ip:{host}"
    _charge(request, caller)
    if not accepted:
        raise _unauthorized("a valid API key is required: send `Authorization: Bearer <key>`")
    return caller


async def get_widget_caller(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> str:
    """Like ``get_caller``, but a widget token (``Authorization: Bearer kbqw1.…``) also passes when it is
    valid and the request comes from a page of the token's origin (its ``Origin`` header)."""
    settings: Settings = request.app.state.settings
    presented = credentials.credentials if credentials else None
    if not settings.api_keys or not is_widget_token(presented):
        return await get_caller(request, credentials)
    caller = f"widget:{_client_host(request)}"  # each reader's address, not the whole wiki, is one bucket
    _charge(request, caller)
    tokens: WidgetTokens = request.app.state.widget_tokens
    try:
        tokens.verify(presented or "", request.headers.get("origin", ""))
    except TokenError as exc:
        raise _unauthorized(str(exc)) from None
    return caller


def checked_ask(body: AskRequest, settings: SettingsDep) -> AskRequest:
    """The request, once its question is known to be neither empty nor too long."""
    limit = min(settings.max_question_chars, MAX_QUESTION_CHARS)
    if len(body.question) > limit:
        raise ApiError(
            422,
            "question_too_long",
            f"the question is {len(body.question)} characters; the limit "
            f"is {limit}. Ask about one thing at a time, in fewer words.",
        )
    check_question(body.question)
    return body


KnowledgeDep = Annotated[KnowledgeBase, Depends(get_kb)]
StoreDep = Annotated[FeedbackStore, Depends(get_store)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
AskBody = Annotated[AskRequest, Depends(checked_ask)]
