"""The insights as tables (the page's and the CSV exports) and as the terminal text of `kbq insights`."""

from __future__ import annotations

import csv
import io
from typing import Any

from service.insights.report import SURFACES, Insights

TABLES = ("daily", "gaps", "voted_down", "documents", "never_cited")
_FORMULA = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet would run a cell starting so as a formula
TEXT_ROWS = 15


def _citations(citations: list[dict[str, Any]]) -> str:
    return "; ".join(f"[{c['n']}] {c['doc_id']} {c['start']}-{c['end']}" for c in citations)


def table(insights: Insights, name: str) -> tuple[list[str], list[list[Any]]]:
    """(header, rows) of one of ``TABLES``; raises KeyError for another name."""
    if name == "daily":
        langs = sorted({lang for d in insights.daily for lang in d["by_lang"]} | {"en", "zh"})
        header = ["day", "questions", "abstained", "abstention_rate", *SURFACES, *langs]
        rows = [
            [d["day"], d["questions"], d["abstained"], d["abstention_rate"]]
            + [d["by_surface"][s] for s in SURFACES]
            + [d["by_lang"].get(lang, 0) for lang in langs]
            for d in insights.daily
        ]
        return header, rows
    if name == "gaps":
        header = ["rank", "question", "asked", "langs", "last_asked", "phrasings"]
        rows = [
            [
                i,
                g.question,
                g.asked,
                " ".join(g.langs),
                g.last_asked,
                " | ".join(p.question for p in g.phrasings),
            ]
            for i, g in enumerate(insights.gaps, 1)
        ]
        return header, rows
    if name == "voted_down":
        keys = ["answer_id", "created", "surface", "question", "answer", "abstained", "up", "down"]
        rows = [
            [v[k] for k in keys] + [" | ".join(v["comments"]), _citations(v["citations"])]
            for v in insights.voted_down
        ]
        return [*keys, "comments", "citations"], rows
    if name in ("documents", "never_cited"):
        keys = ["doc_id", "title", "kind", "lang", "cited"]
        docs = insights.documents if name == "documents" else insights.never_cited
        return keys, [[d[k] for k in keys] for d in docs]
    raise KeyError(name)


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA):
        return "'" + value
    return "" if value is None else value


def to_csv(insights: Insights, name: str) -> str:
    header, rows = table(insights, name)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows([[_cell(v) for v in row] for row in rows])
    return out.getvalue()


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def to_text(insights: Insights) -> str:
    """A terminal summary: the figures, then the top of each table."""
    p, t = insights.period, insights.totals
    lines = [
        f"kbq insights: the last {p.days} days ({p.since} to {p.until}, UTC)",
        f"questions {t['questions']}   answered {t['answered']}   not covered {t['abstained']} "
        f"({_share(t['abstention_rate'])})   votes up {t['up']}   down {t['down']}",
        "by surface:  " + "  ".join(f"{s} {n}" for s, n in insights.by_surface.items()),
        "by language: " + ("  ".join(f"{lang} {n}" for lang, n in insights.by_lang.items()) or "–"),
        "",
        "Unanswered questions, grouped by meaning, most asked first:",
    ]
    for g in insights.gaps[:TEXT_ROWS]:
        more = f"  (+{len(g.phrasings) - 1} other phrasings)" if len(g.phrasings) > 1 else ""
        lines.append(f"  {g.asked:>4}×  {g.question[:90]}{more}")
    lines += ["", "Answers voted down:"]
    for v in insights.voted_down[:TEXT_ROWS]:
        cites = ", ".join(dict.fromkeys(c["doc_id"] for c in v["citations"])) or "no citations"
        lines.append(f"  -{v['down']} +{v['up']}  {v['question'][:60]}  → {cites}")
    lines += ["", "Documents by times cited:"]
    lines += [f"  {d['cited']:>5}  {d['doc_id']:<30} {d['title'][:50]}" for d in insights.documents]
    never = [d["doc_id"] for d in insights.never_cited]
    lines += ["", "Never cited: " + (", ".join(never) or "none")]
    return "\n".join(lines)
