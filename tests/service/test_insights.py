"""Insights over a log whose rows the test wrote: period and per-day counts, surfaces, votes, citations,
gaps grouped by meaning with the real embedders, the lang migration, CSV safety and admin-only access."""

from __future__ import annotations

import base64
import json
import sqlite3
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kb.types import Answer, Citation, Document
from service.feedback import FeedbackStore
from service.insights.export import to_csv, to_text
from service.insights.gaps import MERGE_AT, find_gaps
from service.insights.page import render_page
from service.insights.report import compute

TODAY = date(2026, 3, 10)
DOCS = [Document(f"faq/d{i}", "faq", f"Doc {i}", "en", "text " * 20) for i in range(3)]


def _citation(doc_id: str, n: int = 1) -> Citation:
    return Citation(n, "c", doc_id, "faq", "t", "s", None, None, None, "en", "text", 0, 4, 0.5)


def _write(db: Path, rows: list[dict[str, Any]]) -> dict[str, str]:
    """Rows {question, abstained, client, days_ago, docs, votes: [(helpful, comment)]}; returns id by question."""
    store = FeedbackStore(db)
    ids = {}
    for row in rows:
        cites = tuple(_citation(d, n) for n, d in enumerate(row.get("docs", ()), 1))
        answer = Answer(uuid.uuid4().hex, row["question"], "a [1]", row.get("abstained", False), 0.7, cites)
        store.log_answer(answer, 5.0, row.get("client", "api"))
        ids[row["question"]] = answer.id
        for helpful, comment in row.get("votes", ()):
            assert store.add_feedback(answer.id, helpful, comment)
    store.close()
    with sqlite3.connect(db) as conn:  # move answers to their day; noon UTC
        for row in rows:
            when = datetime.combine(TODAY - timedelta(days=row.get("days_ago", 0)), datetime.min.time(), UTC)
            stamp = (when + timedelta(hours=12)).isoformat(timespec="milliseconds")
            conn.execute("UPDATE answers SET created = ? WHERE id = ?", (stamp, ids[row["question"]]))
    return ids


ROWS: list[dict[str, Any]] = [
    {"question": "which regions have C5?", "client": "widget", "docs": ["faq/d0", "faq/d0", "faq/d1"]},
    {
        "question": "C5 在哪些区域?",
        "client": "slack",
        "days_ago": 1,
        "docs": ["faq/d0"],
        "votes": [(True, None)],
    },
    {
        "question": "why kvm",
        "client": "e2e",
        "days_ago": 2,
        "docs": ["faq/d1"],
        "votes": [(False, "=HYPERLINK(x)")],
    },
    {
        "question": "How many GPUs does a p3.16xlarge have?",
        "abstained": True,
        "client": "mcp",
        "docs": ["faq/d2"],
    },
    {"question": "p3.16xlarge 有几块 GPU?", "abstained": True, "client": "cli", "days_ago": 1},
    {"question": "how many gpus does a p3.16xlarge have", "abstained": True, "days_ago": 3},
    {"question": "Give me a recipe for banana bread.", "abstained": True, "client": "widget"},
    {"question": "old question", "days_ago": 30, "docs": ["faq/d2"], "votes": [(False, "old")]},
]


@pytest.fixture(scope="module")
def embedders(kb):  # type: ignore[no-untyped-def]
    from kb.knowledge import embedders_for

    return embedders_for(kb.settings)


@pytest.fixture
def log(tmp_path: Path) -> Path:
    db = tmp_path / "answers.sqlite3"
    _write(db, ROWS)
    return db


def test_counts_per_day_surface_language_votes_and_citations(log: Path, embedders: list) -> None:
    insights = compute(log, DOCS, embedders, days=7, today=TODAY)
    assert insights.totals == {
        "questions": 7,
        "answered": 3,
        "abstained": 4,
        "abstention_rate": round(4 / 7, 4),
        "up": 1,
        "down": 1,
    }
    assert insights.by_surface == {
        "api": 2,
        "widget": 2,
        "slack": 1,
        "cli": 1,
        "mcp": 1,
    }  # "e2e" is an API caller
    assert insights.by_lang == {"en": 5, "zh": 2}
    assert [d["day"] for d in insights.daily] == [
        (TODAY - timedelta(days=6 - i)).isoformat() for i in range(7)
    ]
    today = insights.daily[-1]
    assert (today["questions"], today["abstained"], today["abstention_rate"]) == (3, 2, round(2 / 3, 4))
    assert insights.daily[0]["abstention_rate"] is None  # no questions that day
    # a document counts once per answer that cites it; an abstention's nearest passages do not count
    assert [(d["doc_id"], d["cited"]) for d in insights.documents] == [
        ("faq/d0", 2),
        ("faq/d1", 2),
        ("faq/d2", 0),
    ]
    assert [d["doc_id"] for d in insights.never_cited] == ["faq/d2"]
    [down] = insights.voted_down
    assert (
        down["question"] == "why kvm" and down["comments"] == ["=HYPERLINK(x)"] and down["surface"] == "api"
    )
    assert down["citations"][0]["doc_id"] == "faq/d1"
    assert json.loads(json.dumps(insights.to_dict()))["totals"]["questions"] == 7


def test_a_longer_period_reaches_older_answers(log: Path, embedders: list) -> None:
    insights = compute(log, DOCS, embedders, days=31, today=TODAY)
    assert insights.totals["questions"] == 8 and insights.totals["down"] == 2 and len(insights.daily) == 31
    assert compute(log, DOCS, embedders, days=1, today=TODAY).totals["questions"] == 3


def test_unanswered_questions_merge_by_meaning_across_languages(log: Path, embedders: list) -> None:
    gaps = compute(log, DOCS, embedders, days=7, today=TODAY).gaps
    assert [(g.asked, g.langs) for g in gaps] == [(3, ("en", "zh")), (1, ("en",))]
    assert {p.question for p in gaps[0].phrasings} == {
        "How many GPUs does a p3.16xlarge have?",  # and its lower-case twin, merged as an exact repeat
        "p3.16xlarge 有几块 GPU?",
    }
    assert gaps[1].question == "Give me a recipe for banana bread."


def test_distinct_questions_stay_apart(embedders: list) -> None:
    rows = [
        ("Is AWS getting rid of Xen completely?", "en", "2026-03-01"),
        ("Why did AWS pick Xen back in 2006?", "en", "2026-03-01"),
        ("How much does a c5.24xlarge cost per hour?", "en", "2026-03-02"),
        ("What is the hourly price of a c5.24xlarge?", "en", "2026-03-02"),
    ]
    gaps = find_gaps(rows, embedders)
    assert len(gaps) == 3 and gaps[0].asked == 2 and 0.5 < MERGE_AT < 1


def test_old_logs_get_the_lang_column(tmp_path: Path) -> None:
    db = tmp_path / "answers.sqlite3"
    with sqlite3.connect(db) as conn:  # the schema before the lang column
        conn.execute(
            "CREATE TABLE answers (id TEXT PRIMARY KEY, question TEXT NOT NULL, answer TEXT NOT NULL, abstained "
            "INTEGER NOT NULL, citations TEXT NOT NULL, confidence REAL NOT NULL, latency_ms REAL NOT NULL, "
            "client TEXT NOT NULL, created TEXT NOT NULL)"
        )
        conn.execute(
            "INSERT INTO answers VALUES ('a', 'C5 在哪些区域?', 'x', 0, '[]', 0.9, 1, 'api', '2026-01-01')"
        )
        conn.execute(
            "INSERT INTO answers VALUES ('b', 'why kvm?', 'x', 1, '[]', 0.1, 1, 'cli', '2026-01-01')"
        )
    store = FeedbackStore(db)
    store.log_answer(Answer("c", "Which regions?", "y", False, 0.8), 1.0)
    assert store.answer("a") is not None
    store.close()
    FeedbackStore(db).close()  # opening it again changes nothing
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT id, lang FROM answers ORDER BY id").fetchall() == [
            ("a", "zh"),
            ("b", "en"),
            ("c", "en"),
        ]


def test_csv_text_and_page_render_every_table(log: Path, embedders: list) -> None:
    insights = compute(log, DOCS, embedders, days=7, today=TODAY)
    voted = to_csv(insights, "voted_down")
    assert "'=HYPERLINK(x)" in voted and ",=HYPERLINK" not in voted  # no formula reaches a spreadsheet
    assert to_csv(insights, "gaps").splitlines()[1].startswith("1,How many GPUs")
    assert to_csv(insights, "never_cited").splitlines() == [
        "doc_id,title,kind,lang,cited",
        "faq/d2,Doc 2,faq,en,0",
    ]
    assert len(to_csv(insights, "daily").splitlines()) == 8
    assert "never cited: faq/d2" in to_text(insights).lower()
    page = render_page(insights)
    assert 'data-figure="questions">7<' in page and "<script" not in page and "style=" not in page
    assert page.count("<svg") == 3 and "=HYPERLINK(x)" in page


def _basic(password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"admin:{password}".encode()).decode()}


def test_the_admin_pages_take_admin_keys_only(make_client) -> None:  # type: ignore[no-untyped-def]
    with make_client(api_keys=("api-key",), admin_keys=("admin-key",)) as client:
        anonymous = client.get("/admin/insights")
        assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"].startswith("Basic")
        for refused in ({"Authorization": "Bearer api-key"}, _basic("api-key")):
            response = client.get("/admin/insights", headers=refused)
            assert response.status_code == 403 and "API key" in response.json()["error"]["message"]
        assert (
            client.get("/admin/insights.json", headers={"Authorization": "Bearer guess"}).status_code == 401
        )
        assert client.get("/admin/insights.csv", headers=_basic("guess")).status_code == 401
        page = client.get("/admin/insights?days=7", headers=_basic("admin-key"))
        assert page.status_code == 200 and "default-src 'none'" in page.headers["content-security-policy"]
        data = client.get("/admin/insights.json", headers={"Authorization": "Bearer admin-key"})
        assert data.status_code == 200 and data.json()["period"]["days"] == 30
        csv = client.get("/admin/insights.csv?table=documents", headers=_basic("admin-key"))
        assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
        assert "attachment" in csv.headers["content-disposition"]
        assert csv.text.startswith("doc_id,title,kind,lang,cited")
        bad = client.get("/admin/insights.csv?table=secrets", headers=_basic("admin-key"))
        assert bad.status_code == 422
        assert client.get("/admin/insights?days=0", headers=_basic("admin-key")).status_code == 422
    with make_client(api_keys=("same",), admin_keys=("same",)) as client:  # an API key never opens them
        assert client.get("/admin/insights", headers={"Authorization": "Bearer same"}).status_code == 403
    with make_client() as client:  # no admin keys: the pages are off, for everyone
        assert client.get("/admin/insights").status_code == 403
