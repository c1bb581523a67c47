"""The Slack bot end to end: the real slack-bolt app mounted in the real FastAPI app, requests signed like
Slack's, and Slack's Web API and response URLs played by a local recorder."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from kb.config import Settings
from kb.types import Answer, Citation
from service.app import create_app
from service.slackbot import mount_slack
from service.slackbot.blocks import MAX_BLOCKS, MAX_TEXT, answer_message
from service.slackbot.bot import ANSWER_THREADS, Seen
from service.slackbot.text import is_follow_up, locale_lang, plain_text, with_context
from service.state import app_state
from tests.service.slack_support import (
    BOT_ID,
    BOT_USER,
    Recorder,
    click_body,
    command_body,
    direct_message,
    envelope,
    event_body,
    mention,
    next_ts,
    recording,
    signed_headers,
    socket_mode,
)

SECRET = "test-signing-secret"
PUBLIC = "https://kb.example.com"
ANSWERED = "Which regions had C5 at launch?"
JSON, FORM = "application/json", "application/x-www-form-urlencoded"
POST = "/api/chat.postMessage"


@pytest.fixture(scope="module")
def recorder() -> Iterator[Recorder]:
    with recording() as recorder:
        yield recorder


@pytest.fixture(scope="module")
def slack_settings(indexed_settings: Settings, recorder: Recorder) -> Settings:
    return replace(
        indexed_settings,
        slack_bot_token="xoxb-test",
        slack_signing_secret=SECRET,
        slack_api_url=recorder.url + "/api/",
        public_url=PUBLIC,
        rate_limit_per_minute=100_000,
    )


@pytest.fixture(scope="module")
def started(slack_settings: Settings) -> Iterator[TestClient]:
    app = create_app(slack_settings)
    assert mount_slack(app, slack_settings)
    with TestClient(app) as client:
        yield client


@pytest.fixture
def client(started: TestClient, recorder: Recorder) -> TestClient:
    recorder.clear()
    return started


def send(client: TestClient, path: str, body: str, content_type: str = JSON, **headers: str) -> Any:
    return client.post(path, content=body, headers={**signed_headers(SECRET, body, content_type), **headers})


def send_event(client: TestClient, event: dict[str, Any], event_id: str | None = None, **headers: str) -> Any:
    response = send(client, "/slack/events", event_body(event, event_id), **headers)
    assert response.status_code == 200, response.text
    return response


def blocks_text(message: dict[str, Any]) -> str:
    return json.dumps(message["blocks"], ensure_ascii=False)


def answer_id(message: dict[str, Any]) -> str:
    actions = next(b for b in message["blocks"] if b["type"] == "actions")
    return actions["elements"][0]["value"]


def settle(client: TestClient, recorder: Recorder) -> list[Any]:
    """The posts made once a DM sent now has been answered, and a moment more: answers that should not
    exist would have been posted by then."""
    send_event(client, direct_message(ANSWERED, channel="DSENTINEL"))
    recorder.wait_for(POST, where=lambda call: call.body["channel"] == "DSENTINEL")
    time.sleep(0.3)
    return [c for c in recorder.to(POST) if c.body["channel"] != "DSENTINEL"]


def test_url_verification_echoes_the_challenge(client: TestClient) -> None:
    body = json.dumps({"token": "legacy", "challenge": "3eZbrw1aB", "type": "url_verification"})
    response = send(client, "/slack/events", body)
    assert response.status_code == 200 and response.json()["challenge"] == "3eZbrw1aB"


def test_mention_is_answered_in_its_thread_with_linked_citations(
    client: TestClient, recorder: Recorder
) -> None:
    event = mention(ANSWERED)
    send_event(client, event)
    (post,) = recorder.wait_for(POST)
    message = post.body
    assert message["channel"] == "C1" and message["thread_ts"] == event["ts"]
    answer = app_state(client.app).store.answer(answer_id(message))
    assert (
        answer is not None
        and answer["question"] == ANSWERED
        and answer["client"] == "slack"
        and not answer["abstained"]
    )
    assert answer["citations"]
    sections = [b["text"]["text"] for b in message["blocks"] if b["type"] == "section"]
    links = re.findall(r"<([^|<>]+)\|\[(\d+)\]>", sections[0])
    assert links, sections[0]
    for url, n in links:
        cited = answer["citations"][int(n) - 1]
        if cited["source"] == "thread":
            assert url == cited["url"]
        else:
            assert url == f"{PUBLIC}/docs/{cited['doc_id']}?start={cited['start']}&amp;end={cited['end']}"
    context = [b for b in message["blocks"] if b["type"] == "context" and "*[" in b["elements"][0]["text"]]
    assert len(context) == len(answer["citations"])
    assert all(c["title"] in blocks_text(message) for c in answer["citations"])
    assert {e["action_id"] for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]} == {
        "kbq_feedback_up",
        "kbq_feedback_down",
    }


def test_mention_inside_a_thread_answers_in_that_thread(client: TestClient, recorder: Recorder) -> None:
    root = next_ts()
    recorder.responses["conversations.replies"] = {"messages": []}
    send_event(client, mention(ANSWERED, thread_ts=root))
    assert recorder.wait_for(POST)[0].body["thread_ts"] == root


def test_direct_message_is_answered_in_the_dm(client: TestClient, recorder: Recorder) -> None:
    send_event(client, direct_message(ANSWERED))
    (post,) = recorder.wait_for(POST)
    assert post.body["channel"] == "D1" and "thread_ts" not in post.body
    assert "*[1]*" in blocks_text(post.body)


def test_abstention_lists_nearest_passages_not_as_an_answer(client: TestClient, recorder: Recorder) -> None:
    send_event(client, direct_message("What is the capital of France?"))
    message = recorder.wait_for(POST)[0].body
    text = blocks_text(message)
    assert "does not cover" in text and "not an answer" in text
    assert not re.search(r"\|\[\d+\]>", message["blocks"][1]["text"]["text"])  # no cited answer sentences


def test_slash_command_answers_ephemerally_through_response_url(
    client: TestClient, recorder: Recorder
) -> None:
    response = send(client, "/slack/commands", command_body(ANSWERED, recorder.url + "/response/1"), FORM)
    assert response.status_code == 200
    (post,) = recorder.wait_for("/response/1")
    assert post.body["response_type"] == "ephemeral" and "*[1]*" in blocks_text(post.body)


def test_slash_command_public_posts_in_channel(client: TestClient, recorder: Recorder) -> None:
    send(client, "/slack/commands", command_body(f"public {ANSWERED}", recorder.url + "/response/2"), FORM)
    (post,) = recorder.wait_for("/response/2")
    assert post.body["response_type"] == "in_channel"
    assert f"*Question:* {ANSWERED}" in blocks_text(post.body)  # "public" is not part of the question


def test_slash_command_without_a_question_shows_usage(client: TestClient) -> None:
    response = send(client, "/slack/commands", command_body("", "http://127.0.0.1:9/unused"), FORM)
    assert response.status_code == 200 and "/kbq public" in response.json()["text"]


def test_follow_up_in_a_thread_uses_the_earlier_question(client: TestClient, recorder: Recorder) -> None:
    root, earlier = next_ts(), "Do I need ENA drivers for C5?"
    follow_up = mention("what about Windows?", thread_ts=root)
    recorder.responses["conversations.replies"] = {
        "messages": [
            {
                "type": "message",
                "user": "U1",
                "text": f"<@{BOT_USER}> {earlier}",
                "ts": root,
                "thread_ts": root,
            },
            {
                "type": "message",
                "user": BOT_USER,
                "bot_id": BOT_ID,
                "text": "AMI 里…",
                "ts": next_ts(),
                "thread_ts": root,
            },
            {"type": "message", "user": "U2", "text": "thanks!", "ts": next_ts(), "thread_ts": root},
            {
                "type": "message",
                "user": "U1",
                "text": follow_up["text"],
                "ts": follow_up["ts"],
                "thread_ts": root,
            },
        ]
    }
    send_event(client, follow_up)
    message = recorder.wait_for(POST)[0].body
    (replies,) = recorder.to("/api/conversations.replies")
    assert replies.body["channel"] == "C1" and replies.body["ts"] == root
    combined = f"{earlier} what about Windows?"
    assert message["thread_ts"] == root and f"*Question:* {combined}" in blocks_text(message)
    logged = app_state(client.app).store.answer(answer_id(message))
    assert logged is not None and logged["question"] == combined


def footer(message: dict[str, Any]) -> str:
    return message["blocks"][-1]["elements"][0]["text"]


def test_answers_come_in_the_askers_slack_locale(client: TestClient, recorder: Recorder) -> None:
    recorder.responses["users.info"] = {"user": {"id": "UZH", "locale": "zh-CN"}}
    send_event(client, direct_message(ANSWERED, user="UZH"))
    message = recorder.wait_for(POST)[0].body
    (info,) = recorder.to("/api/users.info")
    assert info.body["user"] == "UZH" and info.body["include_locale"] in (True, "true", "1")
    assert footer(message).startswith("`中文`")
    send_event(client, direct_message("Why did AWS move from Xen to KVM?", user="UZH"))
    assert footer(recorder.wait_for(POST, 2)[1].body).startswith("`中文`")
    assert len(recorder.to("/api/users.info")) == 1  # the locale is remembered


def test_without_a_locale_the_answer_is_in_the_questions_language(
    client: TestClient, recorder: Recorder
) -> None:
    recorder.responses["users.info"] = {"ok": False, "error": "missing_scope"}
    send_event(client, direct_message("换到 C5 后根盘为什么变成 /dev/nvme0n1?", user="UNOSCOPE"))
    assert footer(recorder.wait_for(POST)[0].body).startswith("`中文`")
    send_event(client, mention(ANSWERED, user="UNOSCOPE2"))
    assert footer(recorder.wait_for(POST, 2)[1].body).startswith("`EN`")


def test_a_locale_in_the_payload_is_used_without_asking_slack(client: TestClient, recorder: Recorder) -> None:
    send(
        client, "/slack/commands", command_body(ANSWERED, recorder.url + "/response/zh", locale="zh-CN"), FORM
    )
    assert footer(recorder.wait_for("/response/zh")[0].body).startswith("`中文`")
    assert recorder.to("/api/users.info") == []


def test_the_question_limit_is_the_settings_one(
    client: TestClient, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    bot = app_state(client.app).slack
    assert bot is not None
    monkeypatch.setattr(bot, "settings", replace(bot.settings, max_question_chars=20))
    send_event(client, direct_message("x" * 21))
    assert "21 characters; the limit is 20" in recorder.wait_for(POST)[0].body["text"]


def test_retries_are_acknowledged_and_not_answered_again(client: TestClient, recorder: Recorder) -> None:
    event, event_id = mention(ANSWERED), f"Ev{next_ts()}"
    send_event(client, event, event_id)
    recorder.wait_for(POST)
    retry = send_event(
        client, event, event_id, **{"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    )
    assert retry.headers.get("x-slack-no-retry") == "1"
    assert len(settle(client, recorder)) == 1


def test_a_repeated_event_is_answered_once(client: TestClient, recorder: Recorder) -> None:
    event, event_id = mention(ANSWERED), f"Ev{next_ts()}"
    for _ in range(3):
        send_event(client, event, event_id)
    send_event(client, event, f"Ev{next_ts()}")  # the same message delivered under another event id
    assert len(settle(client, recorder)) == 1


def test_bot_messages_are_ignored(client: TestClient, recorder: Recorder) -> None:
    send_event(client, direct_message(ANSWERED, user=BOT_USER))  # the bot's own message
    send_event(client, direct_message(ANSWERED, bot_id="BOTHER", user="UOTHER"))
    send_event(client, direct_message(ANSWERED, subtype="bot_message", bot_id="BOTHER"))
    send_event(client, direct_message(ANSWERED, subtype="message_changed"))
    assert settle(client, recorder) == []


@pytest.mark.parametrize("tamper", ["signature", "timestamp"])
def test_unsigned_or_stale_requests_are_refused(client: TestClient, recorder: Recorder, tamper: str) -> None:
    body = event_body(direct_message(ANSWERED))
    if tamper == "signature":
        headers = signed_headers("not-the-secret", body, JSON)
    else:  # signed correctly, but six minutes ago: outside the five-minute window
        headers = signed_headers(SECRET, body, JSON, timestamp=int(time.time()) - 360)
    assert client.post("/slack/events", content=body, headers=headers).status_code == 401
    assert settle(client, recorder) == []


@pytest.mark.parametrize(("action_id", "helpful"), [("kbq_feedback_up", True), ("kbq_feedback_down", False)])
def test_feedback_buttons_land_in_the_feedback_store(
    client: TestClient, recorder: Recorder, action_id: str, helpful: bool
) -> None:
    send_event(client, mention(ANSWERED))
    message = recorder.wait_for(POST)[0].body
    aid = answer_id(message)
    body = click_body(action_id, aid, {"ts": next_ts(), **message}, recorder.url + "/response/vote")
    assert send(client, "/slack/interactions", body, FORM).status_code == 200
    (thanks,) = recorder.wait_for("/response/vote")
    assert thanks.body["response_type"] == "ephemeral" and thanks.body["replace_original"] is False
    store = app_state(client.app).store
    row = next(r for r in store.recent(200) if r["id"] == aid)
    assert (row["up"], row["down"]) == ((1, 0) if helpful else (0, 1))


def test_mrkdwn_in_questions_is_escaped(client: TestClient, recorder: Recorder) -> None:
    # Slack sends "@channel & <b>" typed by a person as "<!channel> &amp; &lt;b&gt;"; a raw form too
    for text in (
        "does C5 support <!channel> &amp; &lt;b&gt; tags?",
        "does C5 support <!channel> & <b> tags?",
    ):
        recorder.clear()
        send_event(client, mention(text))
        posted = blocks_text(recorder.wait_for(POST)[0].body)
        assert "<!channel>" not in posted and "<b>" not in posted
        assert "*Question:* does C5 support @channel &amp; &lt;b&gt; tags?" in posted


def test_empty_mention_gets_usage(client: TestClient, recorder: Recorder) -> None:
    send_event(client, mention(""))
    assert "/kbq" in recorder.wait_for(POST)[0].body["text"]


def test_without_slack_settings_nothing_is_mounted(indexed_settings: Settings) -> None:
    for settings in (indexed_settings, replace(indexed_settings, slack_signing_secret=SECRET)):
        app = create_app(settings)
        assert mount_slack(app, settings) is False
        body = event_body(direct_message(ANSWERED))
        response = TestClient(app).post(
            "/slack/events", content=body, headers=signed_headers(SECRET, body, JSON)
        )
        assert response.status_code == 404


# -- the pure parts


def _citation(n: int, source: str = "faq", **fields: Any) -> Citation:
    return Citation(
        n=n,
        chunk_id=f"c{n}",
        doc_id="faq/c5-migration.en",
        source=source,
        title="C5 <FAQ> & more",
        section="Where?",
        url="https://www.reddit.com/r/aws/comments/x/y/z/",
        author=None,
        date="2017-11-06",
        lang="en",
        quote="q & <a> " * 100,
        start=10 * n,
        end=10 * n + 5,
        score=0.5,
        **{
            "community": source == "thread",
            "label": "community" if source == "thread" else "official",
            **fields,
        },
    )


def test_long_answers_stay_within_block_kit_limits() -> None:
    sentence = "C5 runs on Nitro & <KVM> [1]. " * 400 + "Reported by users [2]."
    answer = Answer(
        id="a1",
        question="<&>" * 666,
        lang="en",
        answer=sentence,
        abstained=False,
        confidence=0.8,
        citations=tuple(_citation(n, "thread" if n == 2 else "faq") for n in range(1, 81)),
    )
    message = answer_message(answer, PUBLIC)
    assert len(message["blocks"]) <= MAX_BLOCKS and len(message["text"]) <= MAX_TEXT
    for block in message["blocks"]:
        texts = [block["text"]] if "text" in block else block.get("elements", [])
        for text in (t for t in texts if t.get("type") == "mrkdwn"):
            assert len(text["text"]) <= MAX_TEXT and "<KVM>" not in text["text"] and "<a>" not in text["text"]
            assert text["text"].count("<") == text["text"].count(">")
            assert not re.search(r"&(?!(amp|lt|gt);)", text["text"])  # every & starts a whole entity
    first = message["blocks"][1]["text"]["text"]
    assert f"<{PUBLIC}/docs/faq/c5-migration.en?start=10&amp;end=15|[1]>" in first
    assert "community report" in json.dumps(message["blocks"])
    assert "more passages" in json.dumps(message["blocks"])


def test_answers_show_their_language_and_what_kind_of_source_each_citation_is() -> None:
    corrected = {
        "chunk_id": "c0",
        "author": "old<user>",
        "url": "https://www.reddit.com/r/aws/comments/x/y/c0/",
    }
    citations = (
        _citation(1),
        _citation(2, "thread"),
        _citation(3, "thread", label="correction", corrects=corrected),
        _citation(4, "thread", label="correction", corrects={**corrected, "url": None}),
    )
    answer = Answer(
        id="a2",
        question="C5 在哪些区域可用?",
        lang="zh",
        answer="三个区域 [1][2][3][4]。",
        abstained=False,
        confidence=0.9,
        citations=citations,
    )
    blocks = answer_message(answer, PUBLIC)["blocks"]
    heads = [
        b["elements"][0]["text"]
        for b in blocks
        if b["type"] == "context" and "*[" in b["elements"][0]["text"]
    ]
    assert heads[0].endswith("· FAQ · official source · 2017-11-06")
    assert "· thread comment · community report ·" in heads[1]
    assert f"· correction of <{corrected['url']}|old&lt;user&gt;’s comment> ·" in heads[2]
    assert "· correction ·" in heads[3] and "<https://www.reddit.com/r/aws/comments/x/y/c0/" not in heads[3]
    assert blocks[-1]["elements"][0]["text"].startswith("`中文` · confidence 0.90")
    english = replace(answer, lang="en", citations=citations[:1])
    assert answer_message(english, PUBLIC)["blocks"][-1]["elements"][0]["text"].startswith("`EN` ·")


@pytest.mark.parametrize(
    ("locale", "lang"),
    [("zh-CN", "zh"), ("zh-TW", "zh"), ("en-GB", "en"), ("ja-JP", None), ("", None), (None, None)],
)
def test_slack_locales_name_an_answer_language(locale: str | None, lang: str | None) -> None:
    assert locale_lang(locale) == lang


@pytest.mark.parametrize(
    ("text", "plain"),
    [
        (f"<@{BOT_USER}> why KVM?", "why KVM?"),
        (
            f"<@{BOT_USER}|kbq> ask <@U2|bob> in <#C9|ops> about <https://aws.amazon.com|C5>",
            "ask @bob in #ops about C5",
        ),
        ("<!here> 2 &lt; 3 &amp;&amp; <b>", "@here 2 < 3 && <b>"),
    ],
)
def test_plain_text_of_slack_messages(text: str, plain: str) -> None:
    assert plain_text(text, BOT_USER) == plain


def test_follow_up_rule() -> None:
    earlier = ["Do I need ENA drivers for C5?", "what about Windows?"]
    assert with_context("and Linux?", earlier) == "Do I need ENA drivers for C5? and Linux?"
    assert with_context("Which regions had C5 at launch?", earlier) == "Which regions had C5 at launch?"
    assert with_context("what about Windows?", []) == "what about Windows?"
    assert is_follow_up("那 Windows 呢?") and not is_follow_up("C5 上 Windows 的 NVMe 超时怎么设置?")


def test_socket_mode_answers_over_the_websocket(indexed_settings: Settings) -> None:
    event, event_id = direct_message(ANSWERED), f"Ev{next_ts()}"
    first, retry = (
        envelope(event_body(event, event_id)),
        envelope(event_body(event, event_id), retry_attempt=1),
    )
    with recording() as api, socket_mode([first, retry]) as slack:
        api.responses["apps.connections.open"] = {"url": slack.url}
        settings = replace(
            indexed_settings,
            slack_bot_token="xoxb-test",
            slack_app_token="xapp-test",
            slack_api_url=api.url + "/api/",
            public_url=PUBLIC,
        )
        app = create_app(settings)
        assert mount_slack(app, settings)
        with TestClient(app) as client:
            acks = slack.wait_for_acks(2)
            (post,) = api.wait_for(POST)
            time.sleep(0.3)
            assert len(api.to(POST)) == 1  # the retry was acknowledged, not answered again
            assert (
                client.post("/slack/events", content="{}").status_code == 404
            )  # no HTTP mode without a secret
        assert {a["envelope_id"] for a in acks} == {first["envelope_id"], retry["envelope_id"]}
        assert post.body["channel"] == "D1" and "*[1]*" in blocks_text(post.body)


def test_channel_messages_are_not_questions_but_mentions_in_them_are(
    client: TestClient, recorder: Recorder
) -> None:
    event = mention(ANSWERED)
    as_message = {**event, "type": "message", "channel_type": "channel"}  # message.channels, same message
    send_event(client, as_message)
    send_event(client, event)
    posts = settle(client, recorder)
    assert len(posts) == 1 and posts[0].body["thread_ts"] == event["ts"]


def test_acks_are_immediate_while_answers_are_busy(
    client: TestClient, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    bot, release = app_state(client.app).slack, threading.Event()
    assert bot is not None
    answer_for = bot.message_for
    monkeypatch.setattr(bot, "message_for", lambda *args: release.wait(10) and answer_for(*args))
    try:
        for _ in range(ANSWER_THREADS + 2):  # every answering thread busy, and a queue
            send_event(client, direct_message(ANSWERED))
        started = time.monotonic()
        response = send(
            client, "/slack/commands", command_body(ANSWERED, recorder.url + "/response/busy"), FORM
        )
        assert response.status_code == 200 and time.monotonic() - started < 1.0
    finally:
        release.set()
    recorder.wait_for(POST, ANSWER_THREADS + 2)
    assert recorder.wait_for("/response/busy")[0].body["response_type"] == "ephemeral"


def test_seen_remembers_the_newest_keys() -> None:
    seen = Seen(size=3)
    assert seen.first_time("a", "b") and seen.first_time("c") and not seen.first_time("a")
    assert seen.first_time("d", "e")  # "b" and "c" are forgotten first
    assert seen.first_time("b") and not seen.first_time("e")
