"""The MCP server driven by the SDK's own client: over stdio against a spawned `kbq mcp`, and over streamable
HTTP against uvicorn on 127.0.0.1, with API keys. Both get cited answers, clear tool errors for bad
arguments, and log their answers with client "mcp"."""

from __future__ import annotations

import os
import sqlite3
import sys
from dataclasses import replace
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from kb.config import Settings
from tests.conftest import ROOT
from tests.service.support import UNANSWERABLE, serve

pytestmark = pytest.mark.e2e
KEY = "mcp-test-key"
TOOLS = {"ask", "search", "read_document"}
REGIONS = "which regions have C5?"


def _text(result: Any) -> str:
    return " ".join(getattr(block, "text", "") for block in result.content)


async def _check_answer(client: Client) -> dict[str, Any]:
    """A cited answer whose every quote is the text read_document returns for its span."""
    result = await client.call_tool("ask", {"question": REGIONS})
    assert not result.is_error, _text(result)
    answer = result.structured_content
    assert answer is not None and not answer["abstained"] and answer["lang"] == "en"
    assert "Virginia" in answer["answer"] and 0 < answer["confidence"] <= 1
    assert answer["citations"] and all(f"[{c['n']}]" in answer["answer"] for c in answer["citations"])
    for c in answer["citations"]:
        args = {"doc_id": c["doc_id"], "start": c["start"], "end": c["end"]}
        span = await client.call_tool("read_document", args)
        assert not span.is_error and span.structured_content["text"] == c["quote"]
    return answer


async def _check_bad_arguments(client: Client) -> None:
    """Every bad call is a tool error that says what was wrong; the server keeps serving."""
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("ask", {"question": "   "}, "empty"),
        ("ask", {"question": "x" * 2500}, "limit is 2000"),
        ("ask", {"question": REGIONS, "lang": "fr"}, "'en' or 'zh'"),
        ("ask", {}, "question"),
        ("search", {"query": "nvme", "k": 0}, "greater than or equal to 1"),
        ("search", {"query": ""}, "empty"),
        ("read_document", {"doc_id": "faq/nope"}, "no document 'faq/nope'"),
        ("read_document", {"doc_id": "faq/c5-migration.en", "start": 50, "end": 10}, "0 <= start < end"),
        ("read_document", {"doc_id": "faq/c5-migration.en", "start": 10**9}, "0 <= start < end"),
        ("read_document", {"doc_id": "faq/c5-migration.en", "start": "ten"}, "valid integer"),
        ("read_document", {"doc_id": "faq/c5-migration.en", "end": 20_001}, "read at most 20000"),
        ("no_such_tool", {}, "no_such_tool"),
    ]
    for tool, args, expected in cases:
        result = await client.call_tool(tool, args)
        assert result.is_error, (tool, args)
        assert expected in _text(result), (tool, args, _text(result))
    assert not (await client.call_tool("search", {"query": "nvme io_timeout", "k": 3})).is_error


async def _exercise(client: Client) -> dict[str, Any]:
    tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == TOOLS
    assert tools["ask"].output_schema and "citations" in tools["ask"].output_schema["properties"]
    assert "lang" in tools["ask"].input_schema["properties"]
    answer = await _check_answer(client)
    zh = (await client.call_tool("ask", {"question": REGIONS, "lang": "zh"})).structured_content
    assert zh is not None and zh["lang"] == "zh" and zh["citations"]
    abstained = (await client.call_tool("ask", {"question": UNANSWERABLE})).structured_content
    assert abstained is not None and abstained["abstained"] and "does not cover" in abstained["answer"]
    hits = (await client.call_tool("search", {"query": "NVMe root device", "k": 3})).structured_content
    assert hits is not None and len(hits["hits"]) == 3
    await _check_bad_arguments(client)
    resources = {str(r.uri): r for r in (await client.list_resources()).resources}
    assert "kbq://documents/faq/c5-migration.en" in resources and len(resources) == 10
    whole = (await client.call_tool("read_document", {"doc_id": "faq/c5-migration.en"})).structured_content
    assert whole is not None and whole["start"] == 0 and whole["end"] == min(whole["length"], 20_000)
    read = await client.read_resource("kbq://documents/faq/c5-migration.en")
    assert "C5" in read.contents[0].text  # type: ignore[union-attr]
    return answer


def _logged(settings: Settings) -> list[tuple[str, str, str]]:
    with sqlite3.connect(settings.feedback_db) as db:
        return db.execute("SELECT id, client, lang FROM answers ORDER BY created").fetchall()


def test_stdio_session_against_a_spawned_kbq_mcp(private_settings: Settings) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KB_", "KBQ_"))}
    env.update(
        {"KB_INDEX_DIR": str(private_settings.index_dir), "KB_CORPUS_DIR": str(private_settings.corpus_dir)}
    )
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "service.cli", "mcp"], env=env, cwd=ROOT
    )

    async def session() -> dict[str, Any]:
        async with Client(params, read_timeout_seconds=120) as client:
            return await _exercise(client)

    answer = anyio.run(session)
    logged = _logged(private_settings)
    assert len(logged) == 3 and {client for _, client, _ in logged} == {"mcp"}  # bad calls log nothing
    assert logged[0] == (answer["id"], "mcp", "en")


@pytest.mark.parametrize("mode", ["auto", "legacy"])  # today's desktop and IDE clients use the handshake era
def test_streamable_http_behind_the_api_keys(private_settings: Settings, mode: str) -> None:
    settings = replace(private_settings, api_keys=(KEY,), rate_limit_per_minute=10_000)

    async def session(url: str, headers: dict[str, str]) -> dict[str, Any]:
        async with httpx2.AsyncClient(headers=headers, timeout=120) as http:
            async with Client(streamable_http_client(f"{url}/mcp", http_client=http), mode=mode) as client:
                return await _exercise(client)

    with serve(settings) as url:
        refused = httpx.post(f"{url}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
        wrong = httpx.post(f"{url}/mcp", json={}, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        answer = anyio.run(session, url, {"Authorization": f"Bearer {KEY}"})
        metrics = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
    logged = _logged(settings)
    assert [a for a in logged if a[0] == answer["id"]] == [(answer["id"], "mcp", "en")]
    assert {client for _, client, _ in logged} == {"mcp"}
    assert 'kbq_answers_total{abstained="false"} 2.0' in metrics  # counted like every other surface's
    assert 'kbq_answers_total{abstained="true"} 1.0' in metrics


def test_http_rejects_a_foreign_host_header(private_settings: Settings) -> None:
    """DNS rebinding protection: a page on another name that resolves to 127.0.0.1 is refused."""
    with serve(private_settings) as url:
        body = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        headers = {"Host": "evil.example", "Accept": "application/json, text/event-stream"}
        assert httpx.post(f"{url}/mcp", json=body, headers=headers).status_code == 421
