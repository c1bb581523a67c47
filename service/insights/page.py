"""The admin insights page: server-rendered HTML and inline SVG, one same-origin stylesheet, no script.

Every figure carries ``data-figure`` (its name in `kbq insights --json`) so tests and scrapers can read it.
"""

from __future__ import annotations

from html import escape
from typing import Any

from service.insights.charts import abstention_chart, language_chart, legend, volume_chart
from service.insights.export import table
from service.insights.report import SURFACES, Insights

PERIODS = (1, 7, 30, 90, 365)
PAGE_ROWS = 50  # gaps and down-voted answers shown; the CSV exports carry all of them
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "private, no-store",
}


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _figure(name: str, label: str, value: Any, shown: str | None = None) -> str:
    return f'<div><dt>{escape(label)}</dt><dd data-figure="{name}">{escape(shown or str(value))}</dd></div>'


def _totals(insights: Insights) -> str:
    t = insights.totals
    cards = [
        _figure("questions", "Questions", t["questions"]),
        _figure("answered", "Answered", t["answered"]),
        _figure("abstained", "Not covered", t["abstained"]),
        _figure("abstention_rate", "Abstention rate", t["abstention_rate"], _share(t["abstention_rate"])),
        _figure("up", "Voted helpful", t["up"]),
        _figure("down", "Voted not helpful", t["down"]),
    ]
    return f'<dl class="totals">{"".join(cards)}</dl>'


def _split(insights: Insights) -> str:
    rows = [
        f'<tr><th scope="row">{s}</th><td data-figure="surface-{s}">{n}</td></tr>'
        for s, n in insights.by_surface.items()
    ]
    langs = [
        f'<tr><th scope="row">{escape(k)}</th><td data-figure="lang-{escape(k)}">{n}</td></tr>'
        for k, n in insights.by_lang.items()
    ]
    return (
        '<div class="split"><table><caption>By surface</caption>' + "".join(rows) + "</table>"
        "<table><caption>By language</caption>"
        + ("".join(langs) or "<tr><td>none</td></tr>")
        + "</table></div>"
    )


def _csv_link(name: str, days: int) -> str:
    return f'<a class="csv" href="insights.csv?table={name}&amp;days={days}" download>Download CSV</a>'


def _plain_table(insights: Insights, name: str) -> str:
    header, rows = table(insights, name)
    head = "".join(f'<th scope="col">{escape(h)}</th>' for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(_show(v))}</td>" for v in row) + "</tr>" for row in rows)
    empty = f'<tr><td colspan="{len(header)}">nothing in this period</td></tr>'
    return f'<table id="table-{name}"><thead><tr>{head}</tr></thead><tbody>{body or empty}</tbody></table>'


def _show(value: Any) -> str:
    if value is None:
        return "–"
    return f"{value:.1%}" if isinstance(value, float) else str(value)


def _more(shown: int, total: int) -> str:
    return (
        f'<p class="note">The {shown} most asked of {total}; the CSV has them all.</p>'
        if total > shown
        else ""
    )


def _gaps(insights: Insights) -> str:
    rows = []
    for i, gap in enumerate(insights.gaps[:PAGE_ROWS], 1):
        others = gap.phrasings[1:]
        detail = ""
        if others:
            items = "".join(
                f'<li>{escape(p.question)} <span class="n">×{p.asked}</span></li>' for p in others
            )
            plural = "s" * (len(others) > 1)
            detail = (
                f"<details><summary>{len(others)} other phrasing{plural}</summary><ul>{items}</ul></details>"
            )
        rows.append(
            f"<tr><td>{i}</td><td>{escape(gap.question)}{detail}</td><td>{gap.asked}</td>"
            f"<td>{' '.join(gap.langs)}</td><td>{escape(_when(gap.last_asked))}</td></tr>"
        )
    head = "<tr><th>#</th><th>Question (its most asked phrasing)</th><th>Asked</th><th>Lang</th>"
    head += "<th>Last asked (UTC)</th></tr>"
    body = "".join(rows) or '<tr><td colspan="5">no unanswered questions in this period</td></tr>'
    table = f'<table id="table-gaps"><thead>{head}</thead><tbody>{body}</tbody></table>'
    return table + _more(len(rows), len(insights.gaps))


def _when(stamp: str) -> str:
    return stamp[:16].replace("T", " ")


def _cited(v: dict[str, Any]) -> str:
    if not v["citations"]:
        return '<p class="meta">no citations</p>'
    items = "".join(
        f'<li><span class="doc">[{c["n"]}] {escape(str(c["doc_id"]))}</span> '
        f'<span class="section">{escape(str(c.get("section") or ""))}</span>'
        f"<blockquote>{escape(str(c['quote']))}</blockquote></li>"
        for c in v["citations"]
    )
    what = "nearest passages (the answer abstained)" if v["abstained"] else "citations"
    return f'<details><summary>{len(v["citations"])} {what}</summary><ol class="cites">{items}</ol></details>'


def _voted_down(insights: Insights) -> str:
    items = []
    for v in insights.voted_down[:PAGE_ROWS]:
        comments = "".join(f"<li>{escape(c)}</li>" for c in v["comments"])
        badge = ' <span class="badge">not covered</span>' if v["abstained"] else ""
        items.append(
            f'<li><p class="q">{escape(v["question"])}{badge}</p>'
            f'<p class="meta">{escape(_when(v["created"]))} · {v["surface"]} · {v["down"]} down, {v["up"]} up'
            f" · confidence {v['confidence']:.2f}</p>"
            f'<p class="a">{escape(v["answer"])}</p>'
            + (f'<ul class="comments">{comments}</ul>' if comments else "")
            + _cited(v)
            + "</li>"
        )
    if not items:
        return "<p>No answer was voted down in this period.</p>"
    return f'<ol id="list-voted-down" class="voted">{"".join(items)}</ol>' + _more(
        len(items), len(insights.voted_down)
    )


def _period_form(days: int) -> str:
    options = "".join(
        f'<option value="{n}"{" selected" * (n == days)}>last {n} day{"s" * (n > 1)}</option>'
        for n in sorted({*PERIODS, days})
    )
    return f'<form method="get" class="period"><label>Period <select name="days">{options}</select></label> <button>Show</button> <a href="insights.json?days={days}">JSON</a></form>'


def _section(section_id: str, title: str, body: str, csv: str | None, days: int, note: str = "") -> str:
    link = _csv_link(csv, days) if csv else ""
    intro = f'<p class="note">{note}</p>' if note else ""
    return f'<section id="{section_id}"><h2>{escape(title)} {link}</h2>{intro}{body}</section>'


def render_page(insights: Insights, base: str = "") -> str:
    p, days = insights.period, insights.period.days
    charts = (
        _section(
            "volume",
            "Questions per day",
            legend(SURFACES) + volume_chart(insights.daily, SURFACES),
            "daily",
            days,
        )
        + _section(
            "abstention",
            "Abstention rate",
            abstention_chart(insights.daily),
            None,
            days,
            "The share of each day's questions the material did not cover.",
        )
        + _section(
            "languages",
            "Languages and surfaces",
            language_chart(insights.by_lang) + _split(insights),
            None,
            days,
        )
    )
    tables = (
        _section(
            "gaps",
            "Unanswered questions, grouped by meaning",
            _gaps(insights),
            "gaps",
            days,
            "Questions the material did not cover, near-duplicates (in either language) merged with kbq's "
            "own embeddings and ranked by how often they were asked: the next FAQ entries to write.",
        )
        + _section("voted-down", "Answers voted down", _voted_down(insights), "voted_down", days)
        + _section(
            "documents",
            "Documents by times cited",
            _plain_table(insights, "documents"),
            "documents",
            days,
            "Answers given in the period that cite each document (abstentions excluded).",
        )
        + _section(
            "never-cited", "Documents never cited", _plain_table(insights, "never_cited"), "never_cited", days
        )
        + _section("daily", "Per day", _plain_table(insights, "daily"), "daily", days)
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<title>kbq insights</title><link rel="icon" href="data:,">'
        f'<link rel="stylesheet" href="{escape(base)}/static/insights.css"></head><body>'
        '<header class="bar"><span class="brand">kbq</span> insights for the people who maintain the material</header>'
        f"<main><h1>Insights</h1>{_period_form(days)}"
        f'<p class="meta">The last {days} day{"s" * (days > 1)}: {p.since} to {p.until} (UTC).</p>'
        f"{_totals(insights)}{charts}{tables}</main></body></html>"
    )
