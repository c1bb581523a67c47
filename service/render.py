"""Human-readable rendering of answers, hits and reports for the terminal."""

from __future__ import annotations

import textwrap

from kb.indexer import UpdateReport
from kb.types import Answer, Hit

LABELS = {"official": "", "community": " (community report)", "correction": " (community correction)"}
LANG_NAMES = {"en": "English", "zh": "中文"}


def answer_text(answer: Answer) -> str:
    # wrapped line by line, so a cited list or code block keeps its line breaks
    lines = [textwrap.fill(line, 100) for line in answer.answer.splitlines()] + [""]
    if answer.citations:
        lines.append("Nearest passages (not an answer):" if answer.abstained else "Sources:")
    for c in answer.citations:
        where = " › ".join(x for x in (c.title, c.section) if x)
        label = LABELS.get(c.label, f" ({c.label})")
        lines.append(f"  [{c.n}] {where} — {c.source}{label}, {c.date or 'undated'}")
        if c.url:
            lines.append(f"      {c.url}")
        if c.label == "correction" and c.corrects:
            whose = f"{c.corrects['author']}'s comment" if c.corrects.get("author") else "an earlier comment"
            lines.append(
                f"      corrects {whose}" + (f": {c.corrects['url']}" if c.corrects.get("url") else "")
            )
        lines.append(f"      “{_short(c.quote)}” ({c.doc_id} {c.start}-{c.end})")
    language = LANG_NAMES.get(answer.lang, answer.lang)
    lines.append(
        f"\nconfidence {answer.confidence:.2f} · answer in {language}"
        + ("  (abstained)" if answer.abstained else "")
    )
    return "\n".join(lines)


def hits_text(hits: list[Hit], explain: bool) -> str:
    lines = []
    for hit in hits:
        c = hit.chunk
        lines.append(f"{hit.rank:>2}. {hit.score:6.3f}  {c.doc_id}  [{c.kind}/{c.lang}] {c.section[:60]}")
        if explain:
            parts = "  ".join(f"{name}={value:.3f}" for name, value in hit.explain.items())
            lines.append(f"      {parts}")
        lines.append(f"      {_short(c.text)}")
    return "\n".join(lines) or "no results"


def report_text(report: UpdateReport, problems: list) -> str:
    lines = [
        f"added {len(report.added)}, changed {len(report.changed)}, removed {len(report.removed)}, "
        f"unchanged {len(report.unchanged)}; embedded {report.embedded_chunks} chunks"
    ]
    if report.rebuilt:
        lines.append(f"rebuilt everything: {report.rebuilt}")
    if report.version:
        lines.append(f"index version {report.version}")
    if problems:
        lines.append(f"skipped {len(problems)} file(s):")
        lines += [f"  {p}" for p in problems]
    return "\n".join(lines)


def _short(text: str, width: int = 140) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"
