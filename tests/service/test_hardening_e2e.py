"""Issue 15's reproductions over a real socket (uvicorn on 127.0.0.1, as `kbq serve` runs it): proxy headers
are trusted only from KB_TRUSTED_PROXIES, what uvicorn cannot parse is a JSON error too, unsigned Slack
requests never reach a parser, and ingest serves nothing from outside the corpus."""

from __future__ import annotations

import http.client
import json
import logging
import socket
from dataclasses import replace
from urllib.parse import quote

import httpx
import pytest

from kb.config import Settings
from service.indexing import ingest
from tests.service.support import serve

pytestmark = pytest.mark.e2e
FAQ = "---\ntitle: Odd name\nlang: en\ndate: 2017-11-06\n---\n\n## Is the odd file served?\n\nYes, it is.\n"


def _raw(url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are; the status, headers and body of the first response."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def _is_json_error(headers: dict[str, str], body: bytes) -> bool:
    return headers.get("content-type", "").startswith("application/json") and set(
        json.loads(body)["error"]
    ) == {
        "code",
        "message",
    }


def test_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(api_settings: Settings) -> None:
    with serve(replace(api_settings, rate_limit_per_minute=3)) as url, httpx.Client(base_url=url) as http:
        statuses = [
            http.get("/v1/documents", headers={"X-Forwarded-For": f"10.9.{i}.{i}"}).status_code
            for i in range(6)
        ]
        assert statuses == [200, 200, 200, 429, 429, 429]  # one address, one bucket, whatever it claims
    trusted = replace(api_settings, rate_limit_per_minute=3, trusted_proxies=("127.0.0.1",))
    with serve(trusted) as url, httpx.Client(base_url=url) as http:
        # behind a trusted proxy each forwarded client is its own bucket...
        assert all(
            http.get("/v1/documents", headers={"X-Forwarded-For": f"10.9.{i}.{i}"}).status_code == 200
            for i in range(6)
        )
        # ...and the client is the proxy's own entry (the rightmost untrusted), not what the client claims
        spoofed = [f"203.0.113.{i}, 10.1.1.1" for i in range(4)]
        statuses = [http.get("/v1/documents", headers={"X-Forwarded-For": v}).status_code for v in spoofed]
        assert statuses == [200, 200, 200, 429]


@pytest.mark.parametrize(
    "request_",
    [
        b"POST /v1/ask HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"POST /v1/ask HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # TLS to a plain-HTTP port
    ],
)
def test_what_uvicorn_cannot_parse_gets_the_json_error_shape(api_settings: Settings, request_: bytes) -> None:
    with serve(api_settings) as url:
        status, headers, body = _raw(url, request_)
    assert status == 400 and _is_json_error(headers, body), (status, headers, body[:200])


def test_a_client_that_never_finishes_its_request_does_not_hold_the_server_open(
    api_settings: Settings,
) -> None:
    # half a body, never the rest, still open while the server stops: without a bound on graceful shutdown
    # the server waits for it for ever (serve() asserts that it stopped)
    stalled = socket.socket()
    try:
        with serve(api_settings) as url:
            host, port = url.removeprefix("http://").split(":")
            stalled.connect((host, int(port)))
            stalled.sendall(
                b"POST /v1/ask HTTP/1.1\r\nHost: kbq\r\nContent-Type: application/json\r\n"
                b'Content-Length: 100\r\n\r\n{"question":'
            )
            with httpx.Client(base_url=url) as http:
                assert http.get("/healthz").status_code == 200  # the stalled request has reached the server
    finally:
        stalled.close()


def test_unsigned_slack_requests_are_refused_before_parsing_and_keep_the_connection(
    api_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    settings = replace(api_settings, slack_bot_token="xoxb-test", slack_signing_secret="secret")
    caplog.set_level(logging.WARNING)
    with serve(settings) as url:
        conn = http.client.HTTPConnection(url.removeprefix("http://"), timeout=10)
        conn.connect()
        first = conn.sock
        bad = [
            ({"Content-Type": "application/json"}, b"{nope"),
            ({"X-Slack-Request-Timestamp": "abc", "X-Slack-Signature": "v0=00"}, b"{}"),
            ({"X-Slack-Request-Timestamp": "9" * 5000, "X-Slack-Signature": "v0=00"}, b"{}"),
            ({"X-Slack-Request-Timestamp": "²", "X-Slack-Signature": "v0=00"}, b"{}"),
            ({"Content-Type": "application/x-www-form-urlencoded"}, b"payload=%7Bnope"),
            ({}, b"\xff\xfe"),
        ]
        for i in range(200):
            headers, body = bad[i % len(bad)]
            conn.request("POST", f"/slack/{('events', 'commands', 'interactions')[i % 3]}", body, headers)
            response = conn.getresponse()
            assert response.status == 401 and json.loads(response.read())["error"]["code"] == "unauthorized"
            assert conn.sock is first, f"request {i} dropped the keep-alive connection"
        conn.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], caplog.text[:2000]


def test_ingest_serves_nothing_outside_the_corpus_and_odd_names_are_reachable(
    private_settings: Settings,
) -> None:
    corpus = private_settings.corpus_dir
    (corpus / "faq" / "passwd.md").symlink_to("/etc/passwd")
    (corpus / "faq" / "odd\nname.en.md").write_text(FAQ, encoding="utf-8")
    report, problems = ingest(private_settings)
    assert report.added == ["faq/odd~0Aname.en"]
    assert [(p.path, "outside the corpus" in p.reason) for p in problems] == [("faq/passwd.md", True)]
    with serve(private_settings) as url, httpx.Client(base_url=url) as http:
        assert http.get("/v1/documents/faq/passwd").status_code == 404
        ids = [d["doc_id"] for d in http.get("/v1/documents").json()]
        assert "faq/passwd" not in ids and "faq/odd~0Aname.en" in ids
        path = "/".join(quote(part, safe="") for part in "faq/odd~0Aname.en".split("/"))  # as widget.js does
        assert http.get(f"/v1/documents/{path}").json()["title"] == "Odd name"
        assert http.get(f"/docs/{path}?start=0&end=5").status_code == 200
