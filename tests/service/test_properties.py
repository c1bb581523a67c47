"""Property-based (Hypothesis): whatever reaches the source view, widget tokens or the Slack endpoints, the
service answers below 500, and every error is the JSON error shape (the source view's HTML page aside)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kb.config import Settings
from service.app import create_app
from service.widget.tokens import TokenError, WidgetTokens
from tests.service.slack_support import recording, signed_headers

KEY, ORIGIN, SECRET, SLACK_SECRET = "prop-key", "http://wiki.test", "w" * 32, "slack-secret"
DOC = "faq/c5-migration.en"
EXAMPLES = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
texts = st.text(max_size=60)
numbers = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.text(alphabet="0123456789²³¹①٣९١２", min_size=1, max_size=20),
    st.integers(min_value=1, max_value=6000).map(lambda n: "9" * n),
    texts,
)


@pytest.fixture(scope="module")
def client(api_settings: Settings) -> Iterator[TestClient]:
    with recording() as slack_api:
        settings_ = replace(
            api_settings,
            api_keys=(KEY,),
            cors_origins=(ORIGIN,),
            widget_secret=SECRET,
            slack_bot_token="xoxb-test",
            slack_signing_secret=SLACK_SECRET,
            slack_api_url=slack_api.url + "/api/",
        )
        with TestClient(create_app(settings_), raise_server_exceptions=False) as client:
            yield client


def _no_server_error(response) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code < 500, f"{response.status_code}: {response.text[:300]}"
    if response.status_code >= 400 and not response.headers.get("content-type", "").startswith("text/html"):
        assert set(response.json()["error"]) == {"code", "message"}, response.text[:300]


def _tokens(valid: WidgetTokens) -> st.SearchStrategy[str]:
    """Tokens of every shape: random text, four random parts, and real tokens with one part changed."""
    real = valid.issue(ORIGIN)

    def mutate(part: int, value: str) -> str:
        parts = real.split(".")
        parts[part] = value
        return ".".join(parts)

    return st.one_of(
        texts.map(lambda t: "kbqw1." + t),
        st.tuples(texts, numbers, texts).map(lambda p: "kbqw1." + ".".join(p)),
        st.tuples(st.integers(0, 3), numbers).map(lambda p: mutate(*p)),
        st.tuples(st.integers(0, 3), texts).map(lambda p: mutate(*p)),
    )


TOKENS = WidgetTokens(SECRET.encode(), frozenset({ORIGIN}))


@EXAMPLES
@given(token=_tokens(TOKENS), origin=st.one_of(st.just(ORIGIN), texts), now=st.floats(0, 1e12))
def test_token_verification_only_ever_refuses_with_a_reason(token: str, origin: str, now: float) -> None:
    try:
        TOKENS.verify(token, origin, now=now)
    except TokenError as exc:
        assert str(exc)


@EXAMPLES
@given(token=_tokens(TOKENS))
def test_any_token_on_the_api_is_answered_below_500(client: TestClient, token: str) -> None:
    if not token.isascii() or any(c in token for c in "\r\n\0"):
        token = quote(token, safe=".")  # what a header can carry
    headers = {"Authorization": f"Bearer {token}", "Origin": ORIGIN}
    _no_server_error(client.post("/v1/feedback", json={"answer_id": "x", "helpful": True}, headers=headers))
    _no_server_error(client.get(f"/docs/{DOC}", params={"t": token}))


@EXAMPLES
@given(
    doc_id=st.one_of(st.just(DOC), texts),
    start=st.one_of(st.none(), numbers),
    end=st.one_of(st.none(), numbers),
    lang=st.one_of(st.none(), texts),
    accept=st.sampled_from(["*/*", "text/html", "application/json"]),
)
def test_source_view_answers_any_query_below_500(
    client: TestClient, doc_id: str, start: str | None, end: str | None, lang: str | None, accept: str
) -> None:
    params = {k: v for k, v in {"start": start, "end": end, "lang": lang}.items() if v is not None}
    path = "/docs/" + quote(doc_id, safe="")
    _no_server_error(
        client.get(path, params=params, headers={"Authorization": f"Bearer {KEY}", "Accept": accept})
    )


SLACK_PATHS = st.sampled_from(["/slack/events", "/slack/commands", "/slack/interactions"])
CONTENT_TYPES = st.sampled_from(["application/json", "application/x-www-form-urlencoded", "text/plain", ""])
BODIES = st.one_of(
    st.binary(max_size=300),
    texts.map(str.encode),
    st.just(b"{nope"),
    st.dictionaries(texts, st.one_of(texts, st.integers(), st.none()), max_size=4).map(
        lambda d: json.dumps(d).encode()
    ),
    st.sampled_from([b"[]", b"null", b"1", b'"x"', b"payload=%7Bnope", b"payload=[]", b'{"type": 5}']),
    # fields bolt reads as objects, as something else (a fuzzed {"event": ""} once reached a 500)
    st.sampled_from(
        [b'{"event": ""}', b'{"event": null}', b'{"authorizations": [1]}', b'{"function_data": 2}']
    ),
    texts.map(lambda t: ("payload=" + quote(json.dumps({"type": t}))).encode()),
)


@EXAMPLES
@given(
    path=SLACK_PATHS,
    body=BODIES,
    content_type=CONTENT_TYPES,
    timestamp=st.one_of(st.none(), numbers),
    signature=st.one_of(st.none(), texts),
)
def test_unsigned_slack_requests_are_refused_as_json(
    client: TestClient,
    path: str,
    body: bytes,
    content_type: str,
    timestamp: str | None,
    signature: str | None,
) -> None:
    headers = {"Content-Type": content_type}
    if timestamp is not None:
        headers["X-Slack-Request-Timestamp"] = quote(timestamp)
    if signature is not None:
        headers["X-Slack-Signature"] = quote(signature)
    response = client.post(path, content=body, headers=headers)
    _no_server_error(response)
    assert response.status_code == 401


@EXAMPLES
@given(path=SLACK_PATHS, body=BODIES, content_type=CONTENT_TYPES)
def test_signed_slack_requests_of_any_shape_are_answered_below_500(
    client: TestClient, path: str, body: bytes, content_type: str
) -> None:
    text = body.decode("utf-8", errors="replace")
    headers = signed_headers(SLACK_SECRET, text, content_type, timestamp=int(time.time()))
    _no_server_error(client.post(path, content=text.encode(), headers=headers))


@pytest.mark.parametrize(
    "body", [b'{"event": ""}', b'{"event": null}', b'{"authorizations": [1]}', b'{"function_data": 2}']
)
def test_a_signed_payload_with_fields_of_the_wrong_shape_is_refused_as_a_400(
    client: TestClient, body: bytes
) -> None:
    headers = signed_headers(SLACK_SECRET, body.decode(), "application/json", timestamp=int(time.time()))
    response = client.post("/slack/events", content=body, headers=headers)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_request"
