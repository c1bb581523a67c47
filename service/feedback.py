"""The answer log and its feedback, in SQLite: every answer given is a row; votes join it."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kb.text import detect_lang
from kb.types import Answer
from service.shared_db import connect_shared

if TYPE_CHECKING:  # importing the knowledge base would load FAISS for `kbq feedback`
    from kb.knowledge import KnowledgeBase

# WAL: the workers log answers while others read; NORMAL is safe with WAL, a crash loses at most the last answers
_PRAGMAS = ("journal_mode=WAL", "synchronous=NORMAL")
SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    id TEXT PRIMARY KEY,
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    abstained INTEGER NOT NULL,
    citations TEXT NOT NULL,
    confidence REAL NOT NULL,
    latency_ms REAL NOT NULL,
    client TEXT NOT NULL,
    created TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS answers_created ON answers (created);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    answer_id TEXT NOT NULL REFERENCES answers (id),
    helpful INTEGER NOT NULL,
    comment TEXT,
    created TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_answer ON feedback (answer_id);
"""

RECENT = """
SELECT a.id, a.created, a.question, a.answer, a.abstained, a.confidence, a.client, a.latency_ms,
       COALESCE(SUM(f.helpful = 1), 0) AS up, COALESCE(SUM(f.helpful = 0), 0) AS down
FROM answers AS a LEFT JOIN feedback AS f ON f.answer_id = a.id
GROUP BY a.id ORDER BY a.created DESC, a.rowid DESC LIMIT ?
"""


def _add_lang_column(db: sqlite3.Connection) -> None:
    """Migration: logs written before answers had a ``lang`` column (the question's language) get it,
    filled in from each question. Safe when two processes open an old log at once."""
    if any(row[1] == "lang" for row in db.execute("PRAGMA table_info(answers)")):
        return
    with db:
        try:
            db.execute("ALTER TABLE answers ADD COLUMN lang TEXT")
        except sqlite3.OperationalError as exc:  # another process added it first
            if "duplicate column" not in str(exc):
                raise
            return
        rows = db.execute("SELECT id, question FROM answers WHERE lang IS NULL").fetchall()
        db.executemany("UPDATE answers SET lang = ? WHERE id = ?", [(detect_lang(q), i) for i, q in rows])


def _create(db: sqlite3.Connection) -> None:
    db.executescript(SCHEMA)
    _add_lang_column(db)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class FeedbackStore:
    """One connection shared under a lock, so it is safe from any thread. (A connection per call would be
    simpler, but closing the last connection of a WAL database checkpoints it: an fsync on every answer.)"""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = connect_shared(self.path, _PRAGMAS, _create)
        self._db.row_factory = sqlite3.Row

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._db:  # one transaction at a time; commits on success, rolls back on error
            yield self._db

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def log_answer(self, answer: Answer, latency_ms: float, client: str = "api") -> None:
        citations = json.dumps([c.to_dict() for c in answer.citations], ensure_ascii=False)
        with self._connect() as db:
            db.execute(
                "INSERT INTO answers (id, question, answer, abstained, citations, confidence, latency_ms, "
                "client, created, lang) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    answer.id,
                    answer.question,
                    answer.answer,
                    int(answer.abstained),
                    citations,
                    answer.confidence,
                    round(latency_ms, 2),
                    client or "api",
                    _now(),
                    detect_lang(answer.question),
                ),
            )

    def add_feedback(self, answer_id: str, helpful: bool, comment: str | None = None) -> bool:
        """Record a vote; False when no answer has that id."""
        with self._connect() as db:
            cursor = db.execute(
                "INSERT INTO feedback (answer_id, helpful, comment, created) "
                "SELECT id, ?, ?, ? FROM answers WHERE id = ?",
                (int(helpful), comment, _now(), answer_id),
            )
            return cursor.rowcount == 1

    def answer(self, answer_id: str) -> dict[str, Any] | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM answers WHERE id = ?", (answer_id,)).fetchone()
        if row is None:
            return None
        data = dict(row)
        data["abstained"] = bool(data["abstained"])
        data["citations"] = json.loads(data["citations"])
        return data

    def recent(self, limit: int = 20) -> list[dict[str, Any]]:
        """The newest answers first, each with its up and down votes."""
        with self._connect() as db:
            rows = db.execute(RECENT, (max(0, limit),)).fetchall()
        return [{**dict(row), "abstained": bool(row["abstained"])} for row in rows]


def ask_logged(
    kb: KnowledgeBase,
    store: FeedbackStore,
    question: str,
    client: str,
    kinds: Collection[str] | None = None,
    langs: Collection[str] | None = None,
    lang: str | None = None,
) -> Answer:
    """Answer (in ``lang``, else the question's language), then log the answer once with its latency, so
    feedback from any client can find it."""
    started = time.perf_counter()
    answer = kb.ask(question, kinds=kinds or None, langs=langs or None, lang=lang)
    store.log_answer(answer, (time.perf_counter() - started) * 1000, client)
    return answer
