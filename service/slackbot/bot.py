"""The slack-bolt app: mentions, direct messages, ``/kbq`` and the feedback buttons.

Every listener acknowledges at once and answers from a bolt lazy listener (a worker thread), so Slack
gets its 200 within 3 seconds whatever the knowledge base costs. Retries and repeated deliveries are
acknowledged and dropped before any listener runs, so one question gets one answer.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import FastAPI
from slack_bolt import Ack, App, BoltContext, BoltResponse, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from kb.config import Settings
from service.slackbot.blocks import FEEDBACK_DOWN, FEEDBACK_UP, answer_message, notice
from service.slackbot.text import locale_lang, plain_text, with_context
from service.state import app_state

log = logging.getLogger(__name__)
COMMAND = "/kbq"
USAGE = (
    "Ask me about AWS moving EC2 from Xen to KVM (C5, Nov 2017): mention me with a question, send me a "
    "direct message, or use `/kbq <question>` (only you see the answer) or `/kbq public <question>`."
)
FAILED = ":warning: Sorry, I could not answer that just now. Please try again in a minute."
ANSWER_THREADS = 8  # lazy listeners answering at once; more questions wait their turn
THREAD_PAGES = 5  # conversations.replies pages read for a follow-up's context
LOCALE_USERS = 10_000  # people whose Slack locale is remembered


class Seen:
    """A bounded, thread-safe set of recently seen keys: the newest ``size`` are remembered."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._keys: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def first_time(self, *keys: str) -> bool:
        """Remember ``keys``; True unless one of them was seen before."""
        with self._lock:
            fresh = not any(k in self._keys for k in keys)
            for k in keys:
                self._keys[k] = None
                self._keys.move_to_end(k)
            while len(self._keys) > self.size:
                self._keys.popitem(last=False)
            return fresh


def _ack(ack: Ack) -> None:
    ack()


def _command_text(text: str) -> tuple[bool, str]:
    """(public?, question) from the text after ``/kbq``."""
    text = plain_text(text)
    first, _, rest = text.partition(" ")
    return (True, rest.strip()) if first.lower() == "public" else (False, text)


def _asked(message: dict[str, Any], event: dict[str, Any], bot_user_id: str | None) -> bool:
    """Whether ``message``, earlier in ``event``'s thread, was a question: a person's message that mentions
    the bot, opens the thread, or is in a direct message with the bot."""
    if message.get("bot_id") or message.get("subtype") or message.get("user") in (None, bot_user_id):
        return False
    if float(message.get("ts", "inf")) >= float(event["ts"]) or not message.get("text"):
        return False
    opens = message["ts"] == event["thread_ts"]
    return opens or event.get("channel_type") == "im" or f"<@{bot_user_id}" in message["text"]


class SlackBot:
    """The bolt ``App`` for one FastAPI app, whose state holds the knowledge base and the answer log."""

    def __init__(self, web: FastAPI, settings: Settings) -> None:
        self.web, self.settings, self.seen = web, settings, Seen()
        self.locales: dict[str, str] = {}  # user id -> Slack locale ("" when Slack did not say)
        client = WebClient(
            token=settings.slack_bot_token, base_url=settings.slack_api_url or WebClient.BASE_URL
        )
        self.app = App(
            name="kbq",
            client=client,
            signing_secret=settings.slack_signing_secret,
            request_verification_enabled=bool(settings.slack_signing_secret),  # Socket Mode needs none
            token_verification_enabled=False,  # auth.test on the first request, not while building the app
            # Run each (instant) ack in the request's own thread. Otherwise bolt queues acks on the same
            # thread pool as the lazy answers, and a burst of questions would delay acks past 3 seconds.
            process_before_response=True,
            listener_executor=ThreadPoolExecutor(max_workers=ANSWER_THREADS, thread_name_prefix="kbq-slack"),
        )
        self.app.use(self.drop_repeats_and_bots)
        self.app.event("app_mention")(ack=_ack, lazy=[self.on_mention])
        self.app.event("message")(ack=_ack, lazy=[self.on_direct_message])
        self.app.command(COMMAND)(ack=self.ack_command, lazy=[self.on_command])
        for action_id in (FEEDBACK_UP, FEEDBACK_DOWN):
            self.app.action(action_id)(ack=_ack, lazy=[self.on_feedback])

    # -- middleware

    def drop_repeats_and_bots(self, body: dict[str, Any], request: Any, next_: Any) -> BoltResponse | None:
        """Acknowledge, and go no further for, Slack retries, repeated events and bots' messages."""
        # the first delivery is being (or was) answered; Socket Mode sends retry number "0" for it
        if (request.headers.get("x-slack-retry-num") or ["0"])[0] != "0":
            return BoltResponse(status=200, body="", headers={"x-slack-no-retry": "1"})
        event = body.get("event") or {}
        if body.get("type") == "event_callback":
            question = event.get("type") == "app_mention" or event.get("channel_type") == "im"
            if not question or event.get("bot_id") or event.get("subtype"):  # bots, edits, joins, channels
                return BoltResponse(status=200, body="")
            # one message can arrive twice under different event ids (a mention in a DM-like conversation)
            keys = [f"event:{body.get('event_id')}", f"message:{event.get('channel')}:{event.get('ts')}"]
            if not self.seen.first_time(*keys):
                return BoltResponse(status=200, body="")
        next_()
        return None

    # -- listeners (lazy: they run after the ack, in a worker thread)

    def on_mention(self, event: dict[str, Any], context: BoltContext, client: WebClient) -> None:
        self.reply(event, context, client, thread_ts=event.get("thread_ts") or event["ts"])

    def on_direct_message(self, event: dict[str, Any], context: BoltContext, client: WebClient) -> None:
        self.reply(event, context, client, thread_ts=event.get("thread_ts"))  # only DMs pass the middleware

    def ack_command(self, ack: Ack, command: dict[str, Any]) -> None:
        problem = self.problem(_command_text(command.get("text", ""))[1])
        if problem:
            ack(**notice(problem))
        else:
            ack()

    def on_command(self, command: dict[str, Any], respond: Respond, client: WebClient) -> None:
        public, question = _command_text(command.get("text", ""))
        if self.problem(question):
            return  # the ack said why
        message = self.message_for(question, self.asker_lang(command, client))
        respond(**message, response_type="in_channel" if public else "ephemeral")

    def on_feedback(self, action: dict[str, Any], respond: Respond) -> None:
        helpful = action["action_id"] == FEEDBACK_UP
        if app_state(self.web).store.add_feedback(action["value"], helpful):
            text = "Thanks, your feedback was recorded" + (" :+1:" if helpful else " :-1:") + "."
        else:
            text = "That answer is no longer in the log, so the vote was not recorded."
        respond(text=text, response_type="ephemeral", replace_original=False)

    # -- answering

    def reply(
        self, event: dict[str, Any], context: BoltContext, client: WebClient, thread_ts: str | None
    ) -> None:
        question = plain_text(event.get("text", ""), context.bot_user_id)
        if event.get("thread_ts") and question:
            combined = with_context(question, self.earlier_questions(event, context.bot_user_id, client))
            question = question if self.problem(combined) else combined
        problem = self.problem(question)
        message = notice(problem) if problem else self.message_for(question, self.asker_lang(event, client))
        client.chat_postMessage(
            channel=event["channel"], thread_ts=thread_ts, unfurl_links=False, unfurl_media=False, **message
        )

    def earlier_questions(
        self, event: dict[str, Any], bot_user_id: str | None, client: WebClient
    ) -> list[str]:
        """The thread's earlier questions, oldest first: its first message and the people's messages to
        the bot (in a direct message, every message of the person)."""
        try:
            pages = client.conversations_replies(channel=event["channel"], ts=event["thread_ts"], limit=200)
            messages = [m for page in itertools.islice(pages, THREAD_PAGES) for m in page.get("messages", [])]
        except SlackApiError as exc:  # e.g. missing channels:history: answer the follow-up on its own
            error = exc.response.get("error")
            log.warning("cannot read thread %s for context: %s", event["thread_ts"], error)
            return []
        return [plain_text(m["text"], bot_user_id) for m in messages if _asked(m, event, bot_user_id)]

    def asker_lang(self, payload: dict[str, Any], client: WebClient) -> str | None:
        """The language to answer in: the asker's Slack locale (the payload's, else users.info's), or None
        (the question's language) when Slack does not say or names neither English nor Chinese."""
        user = payload.get("user_id") or payload.get("user")
        locale = payload.get("locale") or (self.user_locale(user, client) if isinstance(user, str) else "")
        return locale_lang(locale)

    def user_locale(self, user: str, client: WebClient) -> str:
        if user not in self.locales:
            try:
                info = client.users_info(user=user, include_locale=True)
                locale = (info.get("user") or {}).get("locale") or ""
            except (SlackApiError, OSError) as exc:  # e.g. no users:read scope: the question's language
                error = exc.response.get("error") if isinstance(exc, SlackApiError) else exc
                log.warning("cannot read the locale of %s: %s", user, error)
                locale = ""
            if len(self.locales) >= LOCALE_USERS:
                self.locales.clear()
            self.locales[user] = locale
        return self.locales[user]

    def problem(self, question: str) -> str | None:
        """Why ``question`` cannot be asked (as a reply to show), or None."""
        limit = self.settings.max_question_chars
        if not question or question.lower() == "help":
            return USAGE
        if len(question) > limit:
            return f"That question is {len(question)} characters; the limit is {limit}. Ask about one thing."
        return None

    def message_for(self, question: str, lang: str | None = None) -> dict[str, Any]:
        """The answer to post, in ``lang`` (None: the question's language), or a short apology."""
        try:
            answer = app_state(self.web).answer(question, "slack", lang=lang)
        except Exception:  # the user gets a short apology; the log gets the traceback
            log.exception("Slack question failed: %r", question)
            return notice(FAILED)
        return answer_message(answer, self.settings.public_url)
