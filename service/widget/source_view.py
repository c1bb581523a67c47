"""The source view: one document as an HTML page, the cited span wrapped in ``<mark id="kbq-quote">``.

Everything is escaped here, on the server; the page has no script. The link that opens it ends in
``#kbq-quote``, so the browser itself scrolls the quote into view.
"""

from __future__ import annotations

import re
from html import escape

from kb.types import Document

BLOCK = re.compile(r"^[ \t]*\S.*?(?=\n[ \t]*\n|\Z)", re.DOTALL | re.MULTILINE)  # between blank lines
CODE = re.compile(r"(?:(?:    |\t)[^\n]*(?:\n|\Z))+")  # every line indented: a code block
HEADING = re.compile(r"#{1,6}[ \t]+")
STRINGS = {
    "en": {
        "kind": {"article": "Article", "faq": "FAQ", "thread": "Discussion thread"},
        "community": "community report: check it against the official sources",
        "by": "by",
        "original": "Original",
        "quote": "The highlighted passage is the one the answer cited.",
        "jump": "Jump to the highlighted passage",
        "doc": "Source document",
        "error": "kbq could not show this source",
    },
    "zh": {
        "kind": {"article": "文章", "faq": "常见问题", "thread": "讨论帖"},
        "community": "社区报告:请与官方资料核对",
        "by": "作者",
        "original": "原文",
        "quote": "高亮部分是回答所引用的段落。",
        "jump": "跳到高亮段落",
        "doc": "来源文档",
        "error": "kbq 无法显示此来源",
    },
}
PAGE = """<!doctype html>
<html lang="{ui}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{title} · kbq</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{base}/static/source.css">
</head>
<body>
<header class="bar"><span class="brand">kbq</span> <span class="crumb">{label}</span></header>
<main>
{body}
</main>
</body>
</html>
"""


def ui_lang(lang: str | None) -> str:
    return "zh" if (lang or "").lower().startswith("zh") else "en"


def _marked(text: str, lo: int, hi: int, start: int, end: int, first: bool) -> str:
    """``text`` (which sits at ``[lo, hi)`` of the document) escaped, with its part of the span marked."""
    a, b = max(start, lo), min(end, hi)
    if a >= b:
        return escape(text)
    mark_id = ' id="kbq-quote"' if first else ""
    return (
        escape(text[: a - lo])
        + f"<mark{mark_id}>{escape(text[a - lo : b - lo])}</mark>"
        + escape(text[b - lo :])
    )


def render_blocks(text: str, start: int = -1, end: int = -1) -> str:
    """The document as headings and paragraphs; ``[start, end)`` marked, even across paragraphs."""
    out: list[str] = []
    first = True
    for block in BLOCK.finditer(text):
        lo, hi = block.span()
        heading = HEADING.match(block.group())
        if heading and "\n" not in block.group():
            lo += heading.end()
            tag = "h2"
        else:
            tag = "pre" if CODE.fullmatch(block.group()) else "p"
        out.append(f"<{tag}>{_marked(text[lo:hi], lo, hi, start, end, first)}</{tag}>")
        first = first and not (max(start, lo) < min(end, hi))
    return "\n".join(out)


def _meta(doc: Document, s: dict) -> str:
    parts = [escape(s["kind"].get(doc.kind, doc.kind))]
    if doc.author:
        parts.append(f"{s['by']} {escape(doc.author)}")
    if doc.date:
        parts.append(f"<time>{escape(doc.date)}</time>")
    if doc.url and doc.url.startswith(("https://", "http://")):
        parts.append(f'<a href="{escape(doc.url)}" rel="noopener noreferrer">{s["original"]}</a>')
    line = f'<p class="meta">{" · ".join(parts)}</p>'
    if doc.kind == "thread":
        line += f'\n<p class="community">{escape(s["community"])}</p>'
    return line


def render_source(doc: Document, start: int | None, end: int | None, lang: str | None, base: str) -> str:
    """The whole source page; ``start``/``end`` must already be checked against the document."""
    s = STRINGS[ui_lang(lang)]
    span = (start, end) if start is not None and end is not None else (-1, -1)
    note = f'<p class="note"><a href="#kbq-quote">{s["jump"]}</a> · {s["quote"]}</p>' if span[1] > 0 else ""
    body = (
        f'<article lang="{escape(doc.lang)}">\n<h1>{escape(doc.title)}</h1>\n{_meta(doc, s)}\n{note}\n'
        f'<div class="doc">\n{render_blocks(doc.text, *span)}\n</div>\n</article>'
    )
    label = f'{s["doc"]} · <span class="doc-title">{escape(doc.title)}</span>'
    return PAGE.format(ui=ui_lang(lang), title=escape(doc.title), base=escape(base), label=label, body=body)


def render_error(message: str, lang: str | None, base: str) -> str:
    s = STRINGS[ui_lang(lang)]
    body = f'<article class="error"><h1>{s["error"]}</h1>\n<p>{escape(message)}</p></article>'
    return PAGE.format(ui=ui_lang(lang), title=s["error"], base=escape(base), label=s["doc"], body=body)
