"""A scripted mix of 200 asks (HTTP API as api, widget and Slack callers, the real `kbq ask`, MCP over HTTP)
and votes against uvicorn; then `kbq insights --json`, the admin page (as HTML and in headless Chromium)
and its CSV exports must show what a direct SQLite count shows."""

from __future__ import annotations

import json
import os
import random
import re
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from kb.config import Settings
from kb.local_store import copy_published
from tests.conftest import ROOT
from tests.service.support import serve

pytestmark = pytest.mark.e2e
API_KEY, ADMIN_KEY = "mix-api-key", "mix-admin-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
ASKS, CLI_ASKS, MCP_ASKS = 200, 4, 30
DAYS = 2  # today and yesterday (UTC): every answer of the run, even one that straddles midnight
ANSWERABLE = [
    "Which regions had C5 at launch?",
    "Why did AWS move from Xen to KVM?",
    "换到 C5 后根盘为什么变成 /dev/nvme0n1?",
    "What NVMe io_timeout should I set on C5?",
    "C5 需要什么网卡驱动?",
]
UNANSWERED = [
    "How many GPUs does a p3.16xlarge have?",
    "p3.16xlarge 有几块 GPU?",
    "how many GPUs does a p3.16xlarge have",
    "Give me a recipe for banana bread.",
    "How do I change the memory setting of a Lambda function?",
]
CLIENTS = [None, "widget", "slack", "wiki-bot"]  # "wiki-bot" names itself: an API caller
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
FIGURE = re.compile(r'data-figure="([\w-]+)">([^<]*)<')


def _question(rng: random.Random) -> str:
    return rng.choice(UNANSWERED if rng.random() < 0.35 else ANSWERABLE)


def _cli_ask(settings: Settings, question: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KB_", "KBQ_"))}
    env.update({"KB_INDEX_DIR": str(settings.index_dir), "KB_CORPUS_DIR": str(settings.corpus_dir)})
    done = subprocess.run(
        [sys.executable, "-m", "service.cli", "ask", question],
        env=env,
        cwd=ROOT,
        capture_output=True,
        timeout=300,
    )
    assert done.returncode in (0, 3), done.stderr


async def _mcp_asks(url: str, questions: list[str]) -> list[str]:
    async with httpx2.AsyncClient(headers=AUTH, timeout=120) as http:
        async with Client(streamable_http_client(f"{url}/mcp", http_client=http)) as client:
            ids = []
            for question in questions:
                result = await client.call_tool("ask", {"question": question})
                assert not result.is_error and result.structured_content is not None
                ids.append(result.structured_content["id"])
            return ids


def _script(url: str, settings: Settings) -> None:
    """200 asks over every surface, then votes on about a third of the answers (some twice)."""
    rng = random.Random(18)
    ids: list[str] = []
    with httpx.Client(base_url=url, headers=AUTH, timeout=60) as http:
        for i in range(ASKS - CLI_ASKS - MCP_ASKS):
            body = {"question": _question(rng), "client": CLIENTS[i % len(CLIENTS)]}
            response = http.post("/v1/ask", json=body)
            assert response.status_code == 200, response.text
            ids.append(response.json()["id"])
        for _ in range(CLI_ASKS):
            _cli_ask(settings, _question(rng))
        ids += anyio.run(_mcp_asks, url, [_question(rng) for _ in range(MCP_ASKS)])
        for answer_id in rng.sample(ids, 70):
            for _ in range(rng.choice((1, 1, 2))):
                vote = {"answer_id": answer_id, "helpful": rng.random() < 0.6}
                if not vote["helpful"] and rng.random() < 0.5:
                    vote["comment"] = "=cmd|' /C calc'!A0 wrong region list"
                assert http.post("/v1/feedback", json=vote).status_code == 204


@pytest.fixture(scope="module")
def mixed(
    indexed_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Settings]]:
    """A served copy of the session index whose answer log holds the scripted mix."""
    root = tmp_path_factory.mktemp("insights")
    copy_published(indexed_settings.index_dir, root / "index")
    settings = replace(
        indexed_settings,
        index_dir=root / "index",
        api_keys=(API_KEY,),
        admin_keys=(ADMIN_KEY,),
        rate_limit_per_minute=100_000,
    )
    with serve(settings) as url:
        _script(url, settings)
        yield url, settings


def sqlite_figures(db: Path) -> dict[str, Any]:
    """The figures, counted straight from the log with SQL of the test's own."""
    with sqlite3.connect(db) as conn:
        questions, abstained = conn.execute("SELECT COUNT(*), SUM(abstained) FROM answers").fetchone()
        surfaces = conn.execute(
            "SELECT CASE WHEN client IN ('widget', 'slack', 'cli', 'mcp') THEN client ELSE 'api' END AS s, "
            "COUNT(*) FROM answers GROUP BY s"
        ).fetchall()
        langs = conn.execute("SELECT lang, COUNT(*) FROM answers GROUP BY lang").fetchall()
        up, down = conn.execute("SELECT SUM(helpful = 1), SUM(helpful = 0) FROM feedback").fetchone()
        voted_down = conn.execute(
            "SELECT COUNT(DISTINCT answer_id) FROM feedback WHERE helpful = 0"
        ).fetchone()[0]
        cited: Counter[str] = Counter()
        for (citations,) in conn.execute("SELECT citations FROM answers WHERE abstained = 0"):
            cited.update({c["doc_id"] for c in json.loads(citations)})
    return {
        "questions": questions,
        "abstained": abstained,
        "answered": questions - abstained,
        "up": up,
        "down": down,
        "surfaces": dict(surfaces),
        "langs": dict(langs),
        "voted_down": voted_down,
        "cited": dict(cited),
    }


def _check(expected: dict[str, Any], figures: dict[str, str]) -> None:
    for name in ("questions", "answered", "abstained", "up", "down"):
        assert int(figures[name]) == expected[name], name
    for surface, n in expected["surfaces"].items():
        assert int(figures[f"surface-{surface}"]) == n, surface
    for lang, n in expected["langs"].items():
        assert int(figures[f"lang-{lang}"]) == n, lang
    assert figures["abstention_rate"] == f"{expected['abstained'] / expected['questions']:.1%}"


def test_the_script_reached_every_surface(mixed: tuple[str, Settings]) -> None:
    expected = sqlite_figures(mixed[1].feedback_db)
    assert expected["questions"] == ASKS and expected["abstained"] > 20 and expected["down"] > 5
    assert set(expected["surfaces"]) == {"api", "widget", "slack", "cli", "mcp"}
    assert expected["surfaces"]["cli"] == CLI_ASKS and expected["surfaces"]["mcp"] == MCP_ASKS
    assert set(expected["langs"]) == {"en", "zh"}


def test_kbq_insights_json_matches_sqlite(mixed: tuple[str, Settings]) -> None:
    settings = mixed[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KB_", "KBQ_"))}
    env.update({"KB_INDEX_DIR": str(settings.index_dir), "KB_CORPUS_DIR": str(settings.corpus_dir)})
    command = [sys.executable, "-m", "service.cli", "insights", "--json", "--days", str(DAYS)]
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    expected = sqlite_figures(settings.feedback_db)
    figures = {k: str(v) for k, v in data["totals"].items()}
    figures |= {f"surface-{k}": str(v) for k, v in data["by_surface"].items()}
    figures |= {f"lang-{k}": str(v) for k, v in data["by_lang"].items()}
    figures["abstention_rate"] = f"{data['totals']['abstention_rate']:.1%}"
    _check(expected, figures)
    assert sum(d["questions"] for d in data["daily"]) == expected["questions"] and len(data["daily"]) == DAYS
    assert sum(g["asked"] for g in data["gaps"]) == expected["abstained"]
    assert len(data["gaps"]) < len({q.casefold() for q in UNANSWERED})  # en/zh GPU questions are one gap
    assert len(data["voted_down"]) == expected["voted_down"]
    assert {d["doc_id"]: d["cited"] for d in data["documents"] if d["cited"]} == expected["cited"]
    assert set(data["never_cited"]) == {d["doc_id"] for d in data["documents"]} - set(expected["cited"])
    text = subprocess.run(command[:-3] + command[-2:], env=env, cwd=ROOT, capture_output=True, text=True)
    assert text.returncode == 0 and f"questions {expected['questions']}" in text.stdout


def test_the_page_and_its_csv_match_sqlite(mixed: tuple[str, Settings]) -> None:
    url, settings = mixed
    expected = sqlite_figures(settings.feedback_db)
    page = httpx.get(f"{url}/admin/insights?days={DAYS}", headers=ADMIN)
    assert page.status_code == 200
    _check(expected, dict(FIGURE.findall(page.text)))
    gaps = httpx.get(f"{url}/admin/insights.csv?table=gaps&days={DAYS}", headers=ADMIN).text.splitlines()
    assert sum(int(line.split(",")[2]) for line in gaps[1:]) == expected["abstained"]
    docs = httpx.get(f"{url}/admin/insights.csv?table=documents&days={DAYS}", headers=ADMIN).text
    rows = [line.split(",") for line in docs.splitlines()[1:]]
    assert {r[0]: int(r[-1]) for r in rows if int(r[-1])} == expected["cited"]
    down = httpx.get(f"{url}/admin/insights.csv?table=voted_down&days={DAYS}", headers=ADMIN).text
    assert "'=cmd|" in down and ",=cmd" not in down
    assert httpx.get(f"{url}/admin/insights", headers=AUTH).status_code == 403  # the API key is no admin key
    assert httpx.get(f"{url}/admin/insights").status_code == 401


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (make browser)"
)
def test_the_page_in_headless_chromium(mixed: tuple[str, Settings]) -> None:
    from playwright.sync_api import sync_playwright

    url, settings = mixed
    expected = sqlite_figures(settings.feedback_db)
    ARTIFACTS.mkdir(exist_ok=True)
    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        context = browser.new_context(
            viewport={"width": 1280, "height": 900},
            http_credentials={"username": "admin", "password": ADMIN_KEY},
        )
        context.add_init_script(
            "window.__csp = []; document.addEventListener('securitypolicyviolation', "
            "e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"
        )
        page = context.new_page()
        page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("requestfailed", lambda r: problems.append(f"failed {r.url}"))
        page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        response = page.goto(f"{url}/admin/insights?days={DAYS}")
        assert response is not None and response.status == 200
        figures = page.eval_on_selector_all(
            "[data-figure]", "els => Object.fromEntries(els.map(e => [e.dataset.figure, e.textContent]))"
        )
        _check(expected, figures)
        for chart in ("#chart-volume", "#chart-abstention", "#chart-langs"):
            box = page.locator(chart).bounding_box()
            assert box is not None and box["height"] > 40, chart
        fill = page.eval_on_selector("#chart-volume rect.s-widget", "r => getComputedStyle(r).fill")
        assert fill == "rgb(14, 159, 110)"  # the stylesheet loaded and applies under the CSP
        assert page.locator("#table-gaps tbody tr").count() >= 2
        assert page.locator("#list-voted-down > li").count() == expected["voted_down"]
        page.screenshot(path=ARTIFACTS / "insights-page.png", full_page=True)
        page.screenshot(path=ARTIFACTS / "insights-page-top.png")  # the figures and the volume chart
        page.select_option("select[name=days]", "7")
        page.click("form.period button")
        page.wait_for_url("**days=7")
        assert page.locator('[data-figure="questions"]').text_content() == str(expected["questions"])
        problems.extend(page.evaluate("window.__csp"))
        context.close()
        browser.close()
    assert not problems, problems
