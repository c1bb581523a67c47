"""What the answer log says about a period: counts straight from SQLite, gaps grouped by meaning.

A period is the last ``days`` UTC calendar days, today included. Votes count when the answer they judge
was given in the period. A document is cited by an answer that was given (not abstained) and cites it at
least once; an abstention's citations are only the nearest passages, so they do not count.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kb.config import Settings
from kb.embed import Embedder
from kb.types import Document
from service.feedback import FeedbackStore
from service.insights.gaps import Gap, find_gaps

if TYPE_CHECKING:
    from kb.knowledge import KnowledgeBase

SURFACES = ("api", "widget", "slack", "cli", "mcp")  # an API caller naming any other client counts as "api"
MAX_ROWS = 200  # gaps and down-voted answers listed

DAILY = """
SELECT substr(created, 1, 10) AS day, client, lang, COUNT(*) AS n, SUM(abstained) AS abstained
FROM answers WHERE created >= ? GROUP BY day, client, lang
"""
VOTES = """
SELECT COALESCE(SUM(f.helpful = 1), 0) AS up, COALESCE(SUM(f.helpful = 0), 0) AS down
FROM feedback AS f JOIN answers AS a ON a.id = f.answer_id WHERE a.created >= ?
"""
UNANSWERED = """
SELECT question, lang, created FROM answers WHERE abstained = 1 AND created >= ? ORDER BY created DESC
"""  # newest first: of two phrasings that differ only in case or spacing, the latest is shown
VOTED_DOWN = """
SELECT a.id, a.created, a.question, a.answer, a.abstained, a.client, a.confidence, a.citations,
       SUM(f.helpful = 1) AS up, SUM(f.helpful = 0) AS down,
       json_group_array(f.comment) FILTER (WHERE f.helpful = 0 AND COALESCE(f.comment, '') != '') AS comments
FROM answers AS a JOIN feedback AS f ON f.answer_id = a.id WHERE a.created >= ?
GROUP BY a.id HAVING down > 0 ORDER BY down DESC, a.created DESC LIMIT ?
"""
CITED = """
SELECT json_extract(c.value, '$.doc_id') AS doc_id, COUNT(DISTINCT a.id) AS answers
FROM answers AS a, json_each(a.citations) AS c WHERE a.abstained = 0 AND a.created >= ? GROUP BY doc_id
"""


def surface(client: str) -> str:
    return client if client in SURFACES else "api"


def rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


@dataclass(frozen=True)
class Period:
    days: int
    since: date  # first day included (UTC)
    until: date  # last day included: today (UTC)

    @classmethod
    def last(cls, days: int, today: date | None = None) -> Period:
        today = today or datetime.now(UTC).date()
        days = max(1, days)
        return cls(days, today - timedelta(days=days - 1), today)

    def dates(self) -> list[str]:
        return [(self.since + timedelta(days=i)).isoformat() for i in range(self.days)]


@dataclass(frozen=True)
class Insights:
    period: Period
    totals: dict[str, Any]  # questions, answered, abstained, abstention_rate, up, down
    by_surface: dict[str, int]
    by_lang: dict[str, int]
    daily: list[dict[str, Any]]  # one row per day: questions, abstained, abstention_rate, by surface, by lang
    gaps: list[Gap]
    voted_down: list[dict[str, Any]]
    documents: list[dict[str, Any]]  # every indexed document with the answers that cited it, most cited first

    @property
    def never_cited(self) -> list[dict[str, Any]]:
        return [d for d in self.documents if d["cited"] == 0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "period": {
                "days": self.period.days,
                "since": str(self.period.since),
                "until": str(self.period.until),
            },
            "totals": self.totals,
            "by_surface": self.by_surface,
            "by_lang": self.by_lang,
            "daily": self.daily,
            "gaps": [g.to_dict() for g in self.gaps],
            "voted_down": self.voted_down,
            "documents": self.documents,
            "never_cited": [d["doc_id"] for d in self.never_cited],
        }


@contextmanager
def _log(path: Path) -> Iterator[sqlite3.Connection]:
    FeedbackStore(path).close()  # creates the log, or adds the columns an older one lacks
    db = sqlite3.connect(path, timeout=10.0)
    db.row_factory = sqlite3.Row
    try:
        yield db
    finally:
        db.close()


def _daily(rows: Sequence[sqlite3.Row], period: Period) -> list[dict[str, Any]]:
    """One row per day of the period, zeros included, from (day, client, lang) counts."""
    questions: Counter[str] = Counter()
    abstained: Counter[str] = Counter()
    surfaces: dict[str, Counter[str]] = {d: Counter() for d in period.dates()}
    langs: dict[str, Counter[str]] = {d: Counter() for d in period.dates()}
    for row in rows:
        day = row["day"]
        if day not in surfaces:  # a clock that ran ahead: not in the period
            continue
        questions[day] += row["n"]
        abstained[day] += row["abstained"]
        surfaces[day][surface(row["client"])] += row["n"]
        langs[day][row["lang"] or "?"] += row["n"]
    return [
        {
            "day": day,
            "questions": questions[day],
            "abstained": abstained[day],
            "abstention_rate": rate(abstained[day], questions[day]),
            "by_surface": {s: surfaces[day][s] for s in SURFACES},
            "by_lang": dict(sorted(langs[day].items())),
        }
        for day in period.dates()
    ]


def _voted_down(rows: Sequence[sqlite3.Row]) -> list[dict[str, Any]]:
    keep = ("n", "doc_id", "title", "section", "quote", "start", "end")
    return [
        {
            "answer_id": row["id"],
            "created": row["created"],
            "question": row["question"],
            "answer": row["answer"],
            "abstained": bool(row["abstained"]),
            "surface": surface(row["client"]),
            "confidence": row["confidence"],
            "up": row["up"],
            "down": row["down"],
            "comments": [c for c in json.loads(row["comments"] or "[]") if c],
            "citations": [{k: c.get(k) for k in keep} for c in json.loads(row["citations"])],
        }
        for row in rows
    ]


def _documents(cited: dict[str, int], documents: Sequence[Document]) -> list[dict[str, Any]]:
    rows = [
        {
            "doc_id": d.doc_id,
            "title": d.title,
            "kind": d.kind,
            "lang": d.lang,
            "cited": cited.get(d.doc_id, 0),
        }
        for d in documents
    ]
    return sorted(rows, key=lambda r: (-r["cited"], r["doc_id"]))


def compute(
    log_path: Path,
    documents: Sequence[Document],
    embedders: Sequence[Embedder],
    days: int = 30,
    today: date | None = None,
) -> Insights:
    """Insights over the last ``days`` days of the answer log at ``log_path``."""
    period = Period.last(days, today)
    since = period.since.isoformat()  # answers' `created` is ISO 8601 UTC, so text order is time order
    with _log(log_path) as db:
        daily = _daily(db.execute(DAILY, (since,)).fetchall(), period)
        votes = db.execute(VOTES, (since,)).fetchone()
        unanswered = [tuple(r) for r in db.execute(UNANSWERED, (since,))]
        voted_down = _voted_down(db.execute(VOTED_DOWN, (since, MAX_ROWS)).fetchall())
        cited = {r["doc_id"]: r["answers"] for r in db.execute(CITED, (since,))}
    questions = sum(d["questions"] for d in daily)
    abstained = sum(d["abstained"] for d in daily)
    langs: Counter[str] = Counter()
    for d in daily:
        langs.update(d["by_lang"])
    totals = {
        "questions": questions,
        "answered": questions - abstained,
        "abstained": abstained,
        "abstention_rate": rate(abstained, questions),
        "up": votes["up"],
        "down": votes["down"],
    }
    return Insights(
        period=period,
        totals=totals,
        by_surface={s: sum(d["by_surface"][s] for d in daily) for s in SURFACES},
        by_lang=dict(langs.most_common()),
        daily=daily,
        gaps=find_gaps(unanswered, embedders)[:MAX_ROWS],
        voted_down=voted_down,
        documents=_documents(cited, documents),
    )


def insights_for(
    settings: Settings, kb: KnowledgeBase, days: int = 30, today: date | None = None
) -> Insights:
    """Insights over the log beside ``settings``' index, with the knowledge base's documents and embedders."""
    from kb.knowledge import embedders_for

    return compute(settings.feedback_db, kb.documents(), embedders_for(settings), days, today)
