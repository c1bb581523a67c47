"""The widget's server side through the real app: widget.js, signed tokens, the source view, the demo page."""

from __future__ import annotations

import time
from collections.abc import Iterator
from html import escape

import pytest
from fastapi.testclient import TestClient

from kb.config import Settings
from service.state import app_state
from service.widget.source_view import render_blocks
from service.widget.tokens import TokenError, WidgetTokens
from tests.service.support import QUESTIONS, assemble, parse_sse

KEY = "wiki-server-key"
WIKI = "https://wiki.example.com"
AUTH = {"Authorization": f"Bearer {KEY}"}
ASK = {"question": QUESTIONS[0], "client": "widget"}
DEMO_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; frame-ancestors 'none'"
)


@pytest.fixture(scope="module")
def keyed(api_settings: Settings) -> Iterator[TestClient]:
    """An app that requires API keys and lets pages of WIKI embed the widget."""
    from dataclasses import replace

    from service.app import create_app

    settings = replace(api_settings, api_keys=(KEY,), cors_origins=(WIKI,), widget_secret="s3cret")
    with TestClient(create_app(settings)) as client:
        yield client


def _token(client: TestClient, origin: str = WIKI) -> str:
    response = client.post("/v1/widget/token", json={"origin": origin}, headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()["token"]


def _as_widget(token: str, origin: str = WIKI) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Origin": origin}


def test_widget_js_is_one_self_contained_script(client: TestClient) -> None:
    response = client.get("/widget.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    script = response.text
    assert "/v1/ask/stream" in script and "attachShadow" in script and "adoptedStyleSheets" in script
    assert '/*kbq:css*/""' not in script and ":host" in script  # the stylesheet is inlined
    for forbidden in ("eval(", "new Function", "innerHTML", 'setAttribute("style"'):
        assert forbidden not in script
    assert '{"maxQuestionChars": 2000}' in script and "/*kbq:config*/" not in script  # the service's limit
    assert "/*kbq:strings*/{}" not in script and '"launcher": "问 kbq"' in script  # both languages' strings


def test_token_endpoint_needs_an_api_key_and_an_allowed_origin(keyed: TestClient) -> None:
    assert keyed.post("/v1/widget/token", json={"origin": WIKI}).status_code == 401
    bad_key = {"Authorization": "Bearer nope"}
    assert keyed.post("/v1/widget/token", json={"origin": WIKI}, headers=bad_key).status_code == 401
    response = keyed.post("/v1/widget/token", json={"origin": WIKI + "/"}, headers=AUTH)
    assert response.status_code == 200
    body = response.json()
    assert body["expires_in"] == 600 and body["origin"] == WIKI and body["token"].startswith("kbqw1.")
    other = keyed.post("/v1/widget/token", json={"origin": "https://evil.example.com"}, headers=AUTH)
    assert other.status_code == 403 and other.json()["error"]["code"] == "origin_not_allowed"


def test_a_valid_token_from_its_origin_can_ask_stream_and_vote(keyed: TestClient) -> None:
    headers = _as_widget(_token(keyed))
    assert keyed.post("/v1/ask", json=ASK, headers=headers).status_code == 200
    stream = keyed.post("/v1/ask/stream", json=ASK, headers=headers)
    assert stream.status_code == 200 and stream.headers["access-control-allow-origin"] == WIKI
    answer = assemble(parse_sse(stream.text.splitlines()))
    vote = keyed.post("/v1/feedback", json={"answer_id": answer["id"], "helpful": True}, headers=headers)
    assert vote.status_code == 204


def _tampered(token: str) -> list[str]:
    prefix, origin, expires, signature = token.split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    return [
        f"{prefix}.{origin}.{expires}.{flipped}",
        f"{prefix}.{origin}.{int(expires) + 3600}.{signature}",
        f"{prefix}.aHR0cHM6Ly9ldmlsLmV4YW1wbGUuY29t.{expires}.{signature}",  # https://evil.example.com
        f"{prefix}.{origin}.{expires}",
        "kbqw1.%%%.1.%%%",
    ]


def test_missing_expired_tampered_or_misplaced_tokens_are_401(keyed: TestClient) -> None:
    token = _token(keyed)
    tokens = app_state(keyed.app).tokens
    expired = tokens.issue(WIKI, now=time.time() - tokens.ttl - 1)
    refused = [
        {"Origin": WIKI},
        _as_widget(expired),
        _as_widget(token, "https://evil.example.com"),
        {"Authorization": f"Bearer {token}"},  # no Origin: not from a page
        *[_as_widget(bad) for bad in _tampered(token)],
    ]
    for headers in refused:
        for path, body in (
            ("/v1/ask/stream", ASK),
            ("/v1/ask", ASK),
            ("/v1/feedback", {"answer_id": "x", "helpful": True}),
        ):
            response = keyed.post(path, json=body, headers=headers)
            assert response.status_code == 401, (path, headers)
            assert response.json()["error"]["code"] == "unauthorized"
    assert (
        "expired" in keyed.post("/v1/ask", json=ASK, headers=_as_widget(expired)).json()["error"]["message"]
    )


def test_a_token_opens_only_the_widget_routes(keyed: TestClient) -> None:
    headers = _as_widget(_token(keyed))
    assert keyed.post("/v1/search", json={"query": "nvme"}, headers=headers).status_code == 401
    assert keyed.get("/v1/documents", headers=headers).status_code == 401
    assert keyed.post("/v1/widget/token", json={"origin": WIKI}, headers=headers).status_code == 401


def test_cors_preflight_lets_the_wiki_send_its_token(keyed: TestClient) -> None:
    preflight = keyed.options(
        "/v1/ask/stream",
        headers={
            "Origin": WIKI,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == WIKI


def test_without_api_keys_the_widget_needs_no_token(client: TestClient) -> None:
    assert client.post("/v1/ask/stream", json=ASK, headers={"Origin": WIKI}).status_code == 200


def test_tokens_check_signature_expiry_and_origin() -> None:
    tokens = WidgetTokens(b"k" * 32, frozenset({WIKI}))
    token = tokens.issue("HTTPS://Wiki.Example.com/some/page", now=1000)
    assert tokens.verify(token, WIKI, now=1000 + tokens.ttl - 1) == WIKI
    with pytest.raises(TokenError, match="expired"):
        tokens.verify(token, WIKI, now=1000 + tokens.ttl)
    with pytest.raises(TokenError, match="another origin"):
        tokens.verify(token, "http://wiki.example.com", now=1000)
    with pytest.raises(TokenError, match="signature"):
        WidgetTokens(b"x" * 32, frozenset({WIKI})).verify(token, WIKI, now=1000)
    with pytest.raises(TokenError, match="no longer allowed"):
        WidgetTokens(b"k" * 32, frozenset()).verify(token, WIKI, now=1000)
    with pytest.raises(TokenError, match="not listed"):
        tokens.issue("https://evil.example.com")


def test_without_a_configured_secret_one_random_secret_serves_the_process() -> None:
    settings = Settings(api_keys=("k",), cors_origins=(WIKI,))
    first, second = WidgetTokens.from_settings(settings), WidgetTokens.from_settings(settings)
    assert first.secret == second.secret and len(first.secret) == 32
    assert WidgetTokens.from_settings(Settings(widget_secret="fixed")).secret == b"fixed"


def _first_citation(client: TestClient, headers: dict[str, str] | None = None) -> dict:
    return client.post("/v1/ask", json=ASK, headers=headers or {}).json()["citations"][0]


def test_source_view_marks_the_exact_quote(client: TestClient) -> None:
    c = _first_citation(client)
    page = client.get(f"/docs/{c['doc_id']}", params={"start": c["start"], "end": c["end"], "lang": "en"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert f'<mark id="kbq-quote">{escape(c["quote"])}</mark>' in page.text
    assert "<script" not in page.text and "style=" not in page.text
    assert "script-src" not in page.headers["content-security-policy"]  # default-src 'none': no script at all
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    assert '<a href="#kbq-quote">' in page.text
    whole = client.get(f"/docs/{c['doc_id']}")
    assert whole.status_code == 200 and "<mark" not in whole.text


def test_source_view_escapes_the_document_and_marks_across_paragraphs() -> None:
    text = '## Heading <b>\n\nFirst <script>alert("x")</script> & more.\n\nSecond paragraph.'
    start, end = text.index("& more"), text.index("Second") + len("Second")
    html = render_blocks(text, start, end)
    assert "<script" not in html and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "<h2>Heading &lt;b&gt;</h2>" in html
    assert (
        '<mark id="kbq-quote">&amp; more.</mark>' in html and "<p><mark>Second</mark> paragraph.</p>" in html
    )
    assert html.count('id="kbq-quote"') == 1


@pytest.mark.parametrize(
    "params",
    [
        {"start": "5", "end": "5"},
        {"start": "9", "end": "3"},
        {"start": "0"},
        {"start": "a", "end": "9"},
        {"start": "-1", "end": "4"},
        {"start": "0", "end": "99999999"},
    ],
)
def test_source_view_rejects_bad_ranges(client: TestClient, params: dict[str, str]) -> None:
    response = client.get("/docs/faq/c5-migration.en", params=params)
    assert response.status_code == 422 and "start" in response.text


def test_source_view_of_an_unknown_document_is_404(client: TestClient) -> None:
    params = {"start": 0, "end": 3, "lang": "zh"}
    response = client.get("/docs/faq/no-such-doc", params=params, headers={"Accept": "text/html"})
    assert response.status_code == 404 and '<html lang="zh">' in response.text
    assert "&#x27;faq/no-such-doc&#x27;" in response.text
    # anything but a browser gets the JSON error shape
    assert client.get("/docs/faq/no-such-doc", params=params).json()["error"]["code"] == "not_found"


def test_with_api_keys_the_source_view_needs_the_widget_token(keyed: TestClient) -> None:
    token = _token(keyed)
    c = _first_citation(keyed, _as_widget(token))
    path, span = f"/docs/{c['doc_id']}", {"start": c["start"], "end": c["end"]}
    assert keyed.get(path, params=span).status_code == 401
    assert keyed.get(path, params={**span, "t": _tampered(token)[0]}).status_code == 401
    assert keyed.get(path, params={**span, "t": token}).status_code == 200
    assert keyed.get(path, params=span, headers=AUTH).status_code == 200


def test_the_home_page_is_the_demo_wiki_under_a_strict_csp(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and '<html lang="en">' in page.text
    assert page.headers["content-security-policy"] == DEMO_CSP
    assert '<script src="/widget.js" data-kbq-position="bottom-right"></script>' in page.text
    assert page.text.count("<script") == 1 and "style=" not in page.text and "data-kbq-token" not in page.text
    assert "<h1>Runbook: moving a C4 instance to C5</h1>" in page.text and "<pre><code>" in page.text
    chinese = client.get("/zh")
    assert '<html lang="zh-CN">' in chinese.text and chinese.headers["content-security-policy"] == DEMO_CSP
    assert client.get("/static/wiki.css").status_code == 200


def test_with_api_keys_the_demo_page_embeds_a_token_only_for_an_allowed_public_url(make_client) -> None:  # type: ignore[no-untyped-def]
    here = "http://127.0.0.1:8000"
    with make_client(api_keys=(KEY,), public_url=here, cors_origins=(here,)) as c:
        page = c.get("/").text
        token = page.split('data-kbq-token="')[1].split('"')[0]
        assert c.post("/v1/ask", json=ASK, headers=_as_widget(token, here)).status_code == 200
    with make_client(api_keys=(KEY,), public_url=here, cors_origins=(WIKI,)) as c:
        assert "data-kbq-token" not in c.get("/").text
