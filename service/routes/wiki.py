"""GET / and /zh: the demo internal-wiki page with the chat widget embedded, under a strict CSP."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from service.deps import StateDep
from service.state import AppState
from service.widget.pages import HEADERS, render_wiki
from service.widget.tokens import TokenError

router = APIRouter(include_in_schema=False)


def demo_token(state: AppState) -> str | None:
    """With API keys, the demo page plays the wiki's server: it embeds a token for KB_PUBLIC_URL, but only
    when the operator listed that origin in KB_CORS_ORIGINS (otherwise the page would be an open door)."""
    if not state.settings.api_keys:
        return None
    try:
        return state.tokens.issue(state.settings.public_url)
    except TokenError:
        return None


def _page(request: Request, state: AppState, lang: str) -> HTMLResponse:
    base = request.scope.get("root_path", "")
    return HTMLResponse(render_wiki(lang, base, demo_token(state)), headers=HEADERS)


@router.get("/", response_class=HTMLResponse)
def wiki_en(request: Request, state: StateDep) -> HTMLResponse:
    return _page(request, state, "en")


@router.get("/zh", response_class=HTMLResponse)
def wiki_zh(request: Request, state: StateDep) -> HTMLResponse:
    return _page(request, state, "zh")
