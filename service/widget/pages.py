"""The demo wiki pages served at ``/`` and ``/zh``: a C4 → C5 runbook with the widget's one script tag."""

from __future__ import annotations

from html import escape
from pathlib import Path

PAGES = Path(__file__).resolve().parent / "pages"
SLOT = "<!--kbq:widget-->"
LANGS = ("en", "zh")
# What a wiki with the widget embedded could send; the widget needs nothing looser.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; frame-ancestors 'none'"
)
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


def embed_tag(base: str = "", token: str | None = None) -> str:
    """The one tag a wiki page needs; ``token`` only when the service requires API keys."""
    attrs = [f'src="{escape(base)}/widget.js"', 'data-kbq-position="bottom-right"']
    if token:
        attrs.append(f'data-kbq-token="{escape(token)}"')
    return f"<script {' '.join(attrs)}></script>"


def render_wiki(lang: str, base: str = "", token: str | None = None) -> str:
    page = (PAGES / f"wiki.{lang}.html").read_text(encoding="utf-8")
    return page.replace(SLOT, embed_tag(base, token), 1)
