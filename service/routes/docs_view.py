"""GET /docs/{doc_id}?start=&end=: the source view a citation opens, an HTML page with the quote marked.

A refusal is an HTML page for a browser (its ``Accept`` names ``text/html``) and the JSON error shape for
everyone else, with the same status."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from service.auth import authorise
from service.deps import Credentials, StateDep
from service.errors import ApiError, error_response, not_found
from service.spans import checked_span
from service.widget.source_view import render_error, render_source

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


@router.get("/docs/{doc_id:path}", response_class=HTMLResponse, include_in_schema=False)
def source_view(
    doc_id: str,
    request: Request,
    state: StateDep,
    credentials: Credentials,
    start: str | None = None,
    end: str | None = None,
    lang: str | None = None,
    t: str | None = None,
) -> Response:
    """With API keys configured, the page needs a widget token (the link's ``t``) or an API key."""
    base = request.scope.get("root_path", "")
    try:
        authorise(state, request, credentials.credentials if credentials else None, token=t, link=True)
        doc = state.knowledge().document(doc_id)
        if doc is None:
            raise not_found(f"document {doc_id!r}")
        a, b = checked_span(doc, start, end) or (None, None)
    except ApiError as refused:
        headers = {**HEADERS, **refused.headers}
        if "text/html" not in request.headers.get("accept", ""):
            return error_response(refused.status, refused.code, refused.message, headers)
        page = render_error(refused.message, lang, base)
        return HTMLResponse(page, status_code=refused.status, headers=headers)
    return HTMLResponse(render_source(doc, a, b, lang, base), headers=HEADERS)
