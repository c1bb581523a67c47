"""Who may call: the one access rule (API keys, widget tokens, the rate limit) for every route that has one."""

from __future__ import annotations

import hashlib

from fastapi import Request

from service.errors import ApiError
from service.security import key_id, retry_after, valid_key
from service.state import AppState
from service.widget.tokens import TokenError, is_widget_token

KEY_REQUIRED = "a valid API key is required: send `Authorization: Bearer <key>`"
LINK_REFUSED = "open this page from the kbq widget or send an API key"


def authorise(
    state: AppState, request: Request, key: str | None, token: str | None = None, link: bool = False
) -> str:
    """Let the request through and return its caller (the rate-limit bucket it was charged), or raise
    ApiError 401 or 429.

    Without API keys everyone passes, as their address. With them, ``key`` (the bearer credential) must be
    one of them, or ``token`` a valid widget token sent from a page of its origin (the ``Origin`` header);
    a ``link`` the browser follows carries no Origin header, so there signature and expiry must do.
    Refused attempts are charged too (to the address), so guessing keys is rate limited like anything else.
    A valid widget token is its own bucket, whatever address it comes from. The address is the TCP peer's,
    or the one a trusted proxy forwarded (KB_TRUSTED_PROXIES, service/app.py).
    """
    keys = state.settings.api_keys
    host = request.client.host if request.client else "unknown"
    if keys and key and valid_key(key, keys):
        return _charged(state, key_id(key))
    if keys and token and is_widget_token(token):
        try:
            state.tokens.verify(token, None if link else request.headers.get("origin", ""))
        except TokenError as exc:
            _charged(state, f"widget:{host}")
            raise unauthorized(str(exc)) from None
        # the token, not the address: a token (one page view's) is limited however many addresses use it
        return _charged(state, "token:" + hashlib.sha256(token.encode()).hexdigest()[:16])
    caller = _charged(state, f"ip:{host}")
    if keys:
        raise unauthorized(LINK_REFUSED if link else KEY_REQUIRED)
    return caller


def unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, {"WWW-Authenticate": "Bearer"})


def _charged(state: AppState, caller: str) -> str:
    """Spend one of the caller's rate-limit tokens, or answer 429."""
    wait = state.limiter.take(caller)
    if wait:
        raise ApiError(
            429,
            "rate_limited",
            f"too many requests; try again in {retry_after(wait)} s",
            {"Retry-After": retry_after(wait)},
        )
    return caller
