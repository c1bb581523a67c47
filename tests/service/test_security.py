"""API keys, rate limits, body limits, CORS, metrics and start-up, through the real app."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from kb.config import Settings
from kb.store import IndexUnavailable
from service.app import create_app
from service.ratelimit import RateLimiter
from service.state import app_state
from tests.service.support import QUESTIONS, UNANSWERABLE

ASK = {"question": QUESTIONS[0]}


def test_without_keys_the_api_is_open(client: TestClient) -> None:
    assert client.post("/v1/ask", json=ASK).status_code == 200


def test_with_keys_v1_needs_a_valid_bearer_key(make_client) -> None:  # type: ignore[no-untyped-def]
    with make_client(api_keys=("first-key", "second-key")) as c:
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": "Basic Zmlyc3Qta2V5"},
            {"Authorization": "first-key"},
        ):
            response = c.post("/v1/ask", json=ASK, headers=headers)
            assert response.status_code == 401, headers
            assert response.json()["error"]["code"] == "unauthorized"
            assert response.headers["www-authenticate"] == "Bearer"
        assert c.get("/v1/documents").status_code == 401
        for key in ("first-key", "second-key"):
            assert c.post("/v1/ask", json=ASK, headers={"Authorization": f"Bearer {key}"}).status_code == 200
        for path in ("/healthz", "/", "/widget.js"):
            assert c.get(path).status_code == 200, path
        for path in ("/metrics", "/openapi.json", "/docs", "/redoc"):  # KB_PUBLIC_ENDPOINTS would open them
            assert c.get(path).status_code == 401, path
            assert c.get(path, headers={"Authorization": "Bearer first-key"}).status_code == 200, path


def test_rate_limit_answers_429_with_retry_after(make_client) -> None:  # type: ignore[no-untyped-def]
    with make_client(rate_limit_per_minute=3, api_keys=("k1", "k2")) as c:
        k1, k2 = {"Authorization": "Bearer k1"}, {"Authorization": "Bearer k2"}
        assert [c.get("/v1/documents", headers=k1).status_code for _ in range(3)] == [200] * 3
        limited = c.get("/v1/documents", headers=k1)
        assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(limited.headers["retry-after"]) <= 20
        assert c.get("/v1/documents", headers=k2).status_code == 200  # each key has its own bucket
        assert c.get("/healthz").status_code == 200  # open endpoints are not limited
        # without a valid key the client address is the bucket, and refused guesses spend it too
        assert [c.get("/v1/documents").status_code for _ in range(4)] == [401, 401, 401, 429]


def test_rate_limiter_refills_over_time() -> None:
    limiter = RateLimiter(per_minute=60)
    assert all(limiter.take("a", now=0.0) == 0 for _ in range(60))
    assert limiter.take("a", now=0.0) == pytest.approx(1.0)
    assert limiter.take("a", now=0.5) == pytest.approx(0.5)
    assert limiter.take("a", now=2.0) == 0
    assert limiter.take("b", now=0.0) == 0


def test_body_too_large_is_413(make_client) -> None:  # type: ignore[no-untyped-def]
    with make_client(max_body_bytes=1000) as c:
        big = {"question": "why " * 400}
        response = c.post("/v1/ask", json=big)
        assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"

        def chunks() -> Iterator[bytes]:  # no Content-Length: the actual size must be counted
            yield b'{"question": "'
            yield b"x" * 2000
            yield b'"}'

        chunked = c.post("/v1/ask", content=chunks(), headers={"Content-Type": "application/json"})
        assert chunked.status_code == 413 and chunked.json()["error"]["code"] == "payload_too_large"
        assert c.post("/v1/ask", json=ASK).status_code == 200
        # Slack callbacks are signed and echo whole messages: they get a larger limit (404 here: Slack is off)
        slack = c.post("/slack/events", content=b"x" * 5000, headers={"Content-Type": "application/json"})
        assert slack.status_code == 404


def test_cors_allows_only_listed_origins(make_client) -> None:  # type: ignore[no-untyped-def]
    with make_client(cors_origins=("https://wiki.example.com", "*")) as c:
        ok = c.post("/v1/ask", json=ASK, headers={"Origin": "https://wiki.example.com"})
        assert ok.headers["access-control-allow-origin"] == "https://wiki.example.com"
        other = c.post("/v1/ask", json=ASK, headers={"Origin": "https://evil.example.com"})
        assert "access-control-allow-origin" not in other.headers
        preflight = c.options(
            "/v1/ask",
            headers={
                "Origin": "https://wiki.example.com",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://wiki.example.com"


def _sample(metrics: str, name: str, **labels: str) -> float:
    for line in metrics.splitlines():
        match = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if match and all(f'{k}="{v}"' in (match.group(1) or "") for k, v in labels.items()):
            return float(match.group(2))
    raise AssertionError(f"no {name} {labels} in metrics")


def test_metrics_count_requests_and_answers(make_client, kb) -> None:  # type: ignore[no-untyped-def]
    with make_client() as c:
        for question in (QUESTIONS[0], QUESTIONS[1], UNANSWERABLE):
            c.post("/v1/ask", json={"question": question})
        c.get("/no/such/page")
        c.request("BREW", "/healthz")
        c.post("/v1/ask", json={})
        text = c.get("/metrics").text
    assert _sample(text, "kbq_http_requests_total", route="/v1/ask", status="200") == 3
    assert _sample(text, "kbq_http_requests_total", route="/v1/ask", status="422") == 1
    assert _sample(text, "kbq_http_requests_total", route="unmatched", status="404") == 1
    assert _sample(text, "kbq_http_requests_total", method="other", status="405") == 1
    assert _sample(text, "kbq_http_request_duration_seconds_count", route="/v1/ask") == 4
    assert _sample(text, "kbq_answers_total", abstained="true") == 1
    assert _sample(text, "kbq_answers_total", abstained="false") == 2
    assert _sample(text, "kbq_abstention_rate") == pytest.approx(1 / 3)
    assert _sample(text, "kbq_index_documents") == len(kb.documents())
    assert _sample(text, "kbq_index_chunks") == kb.counts()[1]


def test_start_up_fails_clearly_without_an_index(tmp_path: Path) -> None:
    app = create_app(Settings(index_dir=tmp_path / "missing" / "index", corpus_dir=tmp_path))
    with pytest.raises(IndexUnavailable, match="kbq ingest"), TestClient(app):
        pass


def test_an_app_given_a_knowledge_base_does_not_load_it_again(  # type: ignore[no-untyped-def]
    api_settings: Settings, kb, monkeypatch
) -> None:
    from kb.knowledge import KnowledgeBase

    def load_again(*_: object) -> None:
        raise AssertionError("the index was loaded a second time")

    monkeypatch.setattr(KnowledgeBase, "open", load_again)  # `kbq serve` opens it first, once
    with TestClient(create_app(api_settings, kb)) as c:
        assert app_state(c.app).kb is kb and c.post("/v1/ask", json=ASK).status_code == 200


def test_unexpected_failures_are_json_and_do_not_leak(api_settings: Settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    app = create_app(api_settings)
    with TestClient(app, raise_server_exceptions=False) as c:

        def broken(*_: object, **__: object) -> None:
            raise RuntimeError("secret detail /etc/passwd")

        monkeypatch.setattr(app_state(app).kb, "ask", broken)
        response = c.post("/v1/ask", json=ASK)
        assert response.status_code == 500
        assert response.json()["error"]["code"] == "internal" and "secret" not in response.text

        def gone(*_: object, **__: object) -> None:
            raise IndexUnavailable("index at x is corrupt: run `kbq ingest --rebuild`")

        monkeypatch.setattr(app_state(app).kb, "search", gone)
        response = c.post("/v1/search", json={"query": "nvme"})
        assert response.status_code == 503 and response.json()["error"]["code"] == "index_unavailable"
