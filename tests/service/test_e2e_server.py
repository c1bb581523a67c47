"""End to end over a real socket: uvicorn on 127.0.0.1, httpx as the client, a re-ingest while serving."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import httpx
import pytest

from kb.config import Settings
from service.indexing import ingest
from tests.service.support import (
    QUESTIONS,
    UNANSWERABLE,
    assemble,
    check_citations,
    parse_sse,
    same_answer,
    serve,
)

pytestmark = pytest.mark.e2e
KEY = "e2e-secret-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
NEW_QUESTION = "What colour is the kbq end-to-end test marker?"
NEW_ENTRY = (
    f"\n\n## {NEW_QUESTION}\n\nThe kbq end-to-end test marker is painted ultramarine blue with orange "
    "stripes, so reviewers can spot it at once.\n\nSource: kbq test suite, 2026-01-01\n"
)


def _client(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers=AUTH, timeout=30)


def _document_getter(http: httpx.Client):  # type: ignore[no-untyped-def]
    def get(doc_id: str) -> dict:
        response = http.get(f"/v1/documents/{doc_id}")
        assert response.status_code == 200, response.text
        return response.json()

    return get


def _stream(http: httpx.Client, question: str) -> dict:
    with http.stream("POST", "/v1/ask/stream", json={"question": question}) as response:
        assert response.status_code == 200
        return assemble(parse_sse(response.iter_lines()))


def test_answers_over_http_cite_exactly_and_stream_the_same(private_settings: Settings) -> None:
    with serve(replace(private_settings, api_keys=(KEY,))) as url, _client(url) as http:
        for question in [*QUESTIONS, UNANSWERABLE]:
            answer = http.post("/v1/ask", json={"question": question, "client": "e2e"}).json()
            assert answer["abstained"] is (question == UNANSWERABLE)
            check_citations(answer, _document_getter(http))
            assert same_answer(_stream(http, question), answer)


def test_reingest_while_serving_fails_no_request(private_settings: Settings) -> None:
    # as many requests as fit the re-ingest: no rate limit, which is not what this test is about
    settings = replace(private_settings, api_keys=(KEY,), reload_interval=0.0, rate_limit_per_minute=100_000)
    faq = settings.corpus_dir / "faq" / "nitro-hypervisor.en.md"
    with serve(settings) as url, _client(url) as http:
        before = http.get("/healthz").json()["version"]
        faq.write_text(faq.read_text(encoding="utf-8").rstrip("\n") + NEW_ENTRY, encoding="utf-8")
        reports: list = []
        worker = threading.Thread(target=lambda: reports.append(ingest(settings)))
        statuses: list[int] = []
        new_answers: list[str] = []

        def ask(i: int) -> None:
            question = NEW_QUESTION if i % 3 == 0 else QUESTIONS[i % len(QUESTIONS)]
            response = http.post("/v1/ask", json={"question": question})
            statuses.append(response.status_code)
            if question == NEW_QUESTION and response.status_code == 200:
                new_answers.append(response.json()["answer"])

        worker.start()
        deadline = time.monotonic() + 120
        while worker.is_alive() and len(statuses) < 2000 and time.monotonic() < deadline:
            ask(len(statuses))
        worker.join()
        during = len(statuses)
        for _ in range(max(10, 40 - during)):  # and on after the swap, which the next request picks up
            ask(len(statuses))
        report, problems = reports[0]
        assert not problems and report.changed == ["faq/nitro-hypervisor.en"]
        assert during > 0 and len(statuses) >= 40 and set(statuses) == {200}, (during, statuses)
        assert "ultramarine" not in new_answers[0] and "ultramarine" in new_answers[-1]
        health = http.get("/healthz").json()
        assert health["version"] == report.version != before
        answer = http.post("/v1/ask", json={"question": NEW_QUESTION}).json()
        assert not answer["abstained"] and "ultramarine" in answer["answer"]
        check_citations(answer, _document_getter(http))


def test_limits_over_the_wire(private_settings: Settings) -> None:
    with (
        serve(replace(private_settings, api_keys=(KEY,), rate_limit_per_minute=5)) as url,
        _client(url) as http,
    ):
        assert httpx.post(f"{url}/v1/ask", json={"question": QUESTIONS[0]}).status_code == 401
        assert httpx.get(f"{url}/healthz").status_code == 200
        too_big = http.post("/v1/ask", json={"question": "x" * 20_000})
        assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "payload_too_large"
        chunked = http.post(
            "/v1/ask",
            content=iter([b'{"question": "', b"y" * 20_000, b'"}']),
            headers={"Content-Type": "application/json"},
        )
        assert chunked.status_code == 413
        # oversized bodies are refused before they reach the limiter; five keyed requests fit the bucket
        statuses = [http.post("/v1/ask", json={"question": QUESTIONS[0]}).status_code for _ in range(5)]
        assert statuses == [200] * 5
        limited = http.post("/v1/ask", json={"question": QUESTIONS[0]})
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert http.get("/healthz").status_code == 200
