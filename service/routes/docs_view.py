"""GET /docs/{doc_id}?start=&end=: the source view a citation opens, an HTML page with the quote marked."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from kb.config import Settings
from service.deps import KnowledgeDep
from service.security import retry_after, valid_key
from service.widget.source_view import render_error, render_source
from service.widget.tokens import TokenError, WidgetTokens

router = APIRouter()
HEADERS = {
    # No script at all; the #kbq-quote fragment does the scrolling.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the link may carry a widget token
    "Cache-Control": "private, no-store",
}


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _span(text_len: int, start: str | None, end: str | None) -> tuple[int | None, int | None]:
    if start is None and end is None:
        return None, None
    if start is None or end is None or not start.isdigit() or not end.isdigit():
        raise _Refused(422, "start and end must both be given, as whole numbers")
    a, b = int(start), int(end)
    if not 0 <= a < b <= text_len:
        raise _Refused(422, f"start and end must satisfy 0 <= start < end <= {text_len}")
    return a, b


def _check_access(request: Request, t: str | None) -> None:
    """With API keys configured, the page needs a widget token (the link's ``t``) or an API key."""
    settings: Settings = request.app.state.settings
    host = request.client.host if request.client else "unknown"
    wait = request.app.state.limiter.take(f"ip:{host}")
    if wait:
        raise _Refused(429, f"too many requests; try again in {retry_after(wait)} s")
    if not settings.api_keys:
        return
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and valid_key(key, settings.api_keys):
        return
    if not t:
        raise _Refused(401, "open this page from the kbq widget or send an API key")
    tokens: WidgetTokens = request.app.state.widget_tokens
    try:
        tokens.verify(t, None)  # a followed link carries no Origin header; signature and expiry still hold
    except TokenError as exc:
        raise _Refused(401, str(exc)) from None


@router.get("/docs/{doc_id:path}", response_class=HTMLResponse, include_in_schema=False)
def source_view(
    doc_id: str,
    request: Request,
    kb: KnowledgeDep,
    start: str | None = None,
    end: str | None = None,
    lang: str | None = None,
    t: str | None = None,
) -> HTMLResponse:
    base = request.scope.get("root_path", "")
    try:
        _check_access(request, t)
        doc = kb.document(doc_id)
        if doc is None:
            raise _Refused(404, f"there is no document {doc_id!r}")
        a, b = _span(len(doc.text), start, end)
    except _Refused as refused:
        page = render_error(refused.message, lang, base)
        return HTMLResponse(page, status_code=refused.status, headers=HEADERS)
    return HTMLResponse(render_source(doc, a, b, lang, base), headers=HEADERS)
