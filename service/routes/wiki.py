"""GET / and /zh: the demo internal-wiki page with the chat widget embedded, under a strict CSP."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from kb.config import Settings
from service.widget.pages import HEADERS, render_wiki
from service.widget.tokens import TokenError, WidgetTokens

router = APIRouter(include_in_schema=False)


def demo_token(request: Request) -> str | None:
    """With API keys, the demo page plays the wiki's server: it embeds a token for KB_PUBLIC_URL, but only
    when the operator listed that origin in KB_CORS_ORIGINS (otherwise the page would be an open door)."""
    settings: Settings = request.app.state.settings
    if not settings.api_keys:
        return None
    tokens: WidgetTokens = request.app.state.widget_tokens
    try:
        return tokens.issue(settings.public_url)
    except TokenError:
        return None


def _page(request: Request, lang: str) -> HTMLResponse:
    base = request.scope.get("root_path", "")
    return HTMLResponse(render_wiki(lang, base, demo_token(request)), headers=HEADERS)


@router.get("/", response_class=HTMLResponse)
def wiki_en(request: Request) -> HTMLResponse:
    return _page(request, "en")


@router.get("/zh", response_class=HTMLResponse)
def wiki_zh(request: Request) -> HTMLResponse:
    return _page(request, "zh")
