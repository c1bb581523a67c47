"""Mount the Slack bot on the FastAPI app: HTTP routes for Slack's requests, and Socket Mode when an
app-level token is set. Without Slack settings nothing is added."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool

from kb.config import Settings
from service.errors import HTTP_CODES, error_response
from service.slackbot.verify import signed_by_slack
from service.state import app_state

if TYPE_CHECKING:  # slack-bolt is imported only when Slack is configured
    from slack_bolt import App, BoltRequest

    from service.slackbot.bot import SlackBot

log = logging.getLogger(__name__)
# Events, slash commands and interactivity (button clicks) each get a Request URL in the Slack app's
# settings; bolt tells the payloads apart, so all three paths share one handler.
PATHS = ("/slack/events", "/slack/commands", "/slack/interactions")


def mount_slack(app: FastAPI, settings: Settings) -> bool:
    """Add the Slack bot to ``app`` when ``settings`` configure one; False (and nothing added) otherwise.

    HTTP mode needs SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET; Socket Mode needs SLACK_BOT_TOKEN and
    SLACK_APP_TOKEN and connects when the app starts.
    """
    if not settings.slack_bot_token or not (settings.slack_signing_secret or settings.slack_app_token):
        if settings.slack_bot_token or settings.slack_signing_secret or settings.slack_app_token:
            log.warning("Slack bot off: set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET (or SLACK_APP_TOKEN)")
        return False
    state = app_state(app)
    if state.slack is not None:  # create_app mounts it already; never twice
        return True
    from service.slackbot.bot import SlackBot

    bot = state.slack = SlackBot(app, settings)
    if settings.slack_signing_secret:
        endpoint = _endpoint(bot.app, settings.slack_signing_secret)
        for path in PATHS:
            app.add_api_route(path, endpoint, methods=["POST"], include_in_schema=False)
    if settings.slack_app_token:
        app.router.lifespan_context = _with_socket_mode(
            app.router.lifespan_context, bot, settings.slack_app_token
        )
    return True


def _endpoint(bolt: App, secret: str) -> Callable[[Request], Any]:
    # slack_bolt.adapter.fastapi's SlackRequestHandler.handle() runs bolt's dispatch on the event loop, and
    # dispatch waits for the ack by polling with time.sleep (and calls auth.test on the first request).
    # The same adapter's conversions, with dispatch in a worker thread, keep the loop free.
    from slack_bolt.adapter.starlette.handler import to_starlette_response

    async def slack(request: Request) -> Response:
        bolt_request = _signed_request(request, await request.body(), secret)
        if isinstance(bolt_request, Response):
            return bolt_request
        return _json_errors(to_starlette_response(await run_in_threadpool(bolt.dispatch, bolt_request)))

    return slack


def _signed_request(request: Request, body: bytes, secret: str) -> BoltRequest | Response:
    """Bolt's request, or the JSON error for a request not signed by Slack (checked first: nothing unsigned
    is decoded or parsed; bolt checks the signature again, harmlessly) or one bolt cannot read."""
    from slack_bolt.adapter.starlette.handler import to_bolt_request
    from slack_bolt.request.internals import parse_body

    headers = request.headers
    if not signed_by_slack(
        secret, body, headers.get("x-slack-request-timestamp"), headers.get("x-slack-signature")
    ):
        return error_response(401, "unauthorized", "the request is not signed by Slack (or is too old)")
    try:
        payload = parse_body(body.decode("utf-8"), headers.get("content-type"))
        if not isinstance(payload, dict) or not _bolt_can_read(payload):
            raise ValueError("not a Slack payload")
        return to_bolt_request(request, body)
    except (ValueError, TypeError, AttributeError, KeyError, IndexError):  # bolt reads fields as it parses
        return error_response(400, "invalid_request", "the Slack payload could not be read")


# Fields bolt's middlewares read as objects without checking (slack_bolt.request.internals,
# ignoring_self_events: ``body.get("event", {}).get("bot_id")``): Slack always sends them so, a broken or
# forged payload may not, and bolt then fails with a server error.
OBJECT_FIELDS = ("event", "function_data")


def _bolt_can_read(payload: dict) -> bool:
    authorizations = payload.get("authorizations")
    return all(isinstance(payload[k], dict) for k in OBJECT_FIELDS if k in payload) and (
        authorizations is None
        or isinstance(authorizations, list)
        and all(isinstance(a, dict) for a in authorizations)
    )


def _json_errors(response: Response) -> Response:
    """Bolt answers refusals in plain text; the service's errors are JSON."""
    if response.status_code < 400:
        return response
    message = bytes(response.body).decode("utf-8", "replace")[:200] or "the Slack request was refused"
    return error_response(
        response.status_code, HTTP_CODES.get(response.status_code, "invalid_request"), message
    )


def _with_socket_mode(
    inner: Callable[[Any], AbstractAsyncContextManager[Any]], bot: SlackBot, app_token: str
) -> Callable[[Any], AbstractAsyncContextManager[Any]]:
    """The app's lifespan, plus a Socket Mode connection while the app runs (after the index is loaded)."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[Any]:
        async with inner(app) as state:
            handler = SocketModeHandler(bot.app, app_token)
            try:
                await run_in_threadpool(handler.connect)
                log.info("Slack Socket Mode connected")
            except Exception:  # the API and the widget keep serving; the log says why Slack does not
                log.exception("Slack Socket Mode could not connect; the Slack bot is off")
            try:
                yield state
            finally:
                await run_in_threadpool(handler.close)

    return lifespan
