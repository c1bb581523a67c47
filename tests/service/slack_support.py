"""Helpers for the Slack bot tests: a local stand-in for Slack's Web API and response URLs that records
every call, and requests signed the way Slack signs them."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

BOT_USER, BOT_ID, TEAM = "UBOT", "BBOT", "T1"
_ts = itertools.count(1)


@dataclass(frozen=True)
class Call:
    path: str
    body: dict[str, Any]


@dataclass
class Recorder:
    """Answers like Slack (``{"ok": true, ...}``; auth.test names the bot ``UBOT``) and keeps every call."""

    url: str = ""
    calls: list[Call] = field(default_factory=list)
    responses: dict[str, dict[str, Any]] = field(default_factory=dict)  # Web API method -> extra fields
    changed: threading.Condition = field(default_factory=threading.Condition)

    def record(self, call: Call) -> dict[str, Any]:
        with self.changed:
            self.calls.append(call)
            self.changed.notify_all()
        method = call.path.removeprefix("/api/")
        defaults = {
            "auth.test": {"user_id": BOT_USER, "bot_id": BOT_ID, "team_id": TEAM, "user": "kbq"},
            "chat.postMessage": {"channel": call.body.get("channel"), "ts": next_ts()},
        }
        return {"ok": True, **defaults.get(method, {}), **self.responses.get(method, {})}

    def to(self, path: str) -> list[Call]:
        with self.changed:
            return [c for c in self.calls if c.path == path]

    def wait_for(
        self, path: str, count: int = 1, timeout: float = 10.0, where: Callable[[Call], bool] = lambda c: True
    ) -> list[Call]:
        """The first ``count`` calls to ``path`` (that match ``where``), waiting up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while len(found := [c for c in self.calls if c.path == path and where(c)]) < count:
                left = deadline - time.monotonic()
                assert left > 0, f"no {count} call(s) to {path} within {timeout} s: {self.calls}"
                self.changed.wait(left)
            return found[:count]

    def clear(self) -> None:
        with self.changed:
            self.calls.clear()
            self.responses.clear()


def _handler(recorder: Recorder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            url = urlsplit(self.path)
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            body: dict[str, Any] = dict(parse_qsl(url.query))
            if raw:
                is_json = "json" in (self.headers.get("Content-Type") or "")
                body.update(json.loads(raw) if is_json else dict(parse_qsl(raw)))
            reply = json.dumps(recorder.record(Call(url.path, body))).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        do_GET = do_POST = _serve

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def recording() -> Iterator[Recorder]:
    """A recorder listening on 127.0.0.1 and a free port, in a thread."""
    recorder = Recorder()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(recorder))
    recorder.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        server.shutdown()
        server.server_close()


def next_ts() -> str:
    """A fresh Slack message timestamp."""
    return f"{1_700_000_000 + next(_ts)}.000100"


def signed_headers(secret: str, body: str, content_type: str, timestamp: int | None = None) -> dict[str, str]:
    """Headers Slack sends: ``v0=`` + HMAC-SHA256 of ``v0:{timestamp}:{body}`` under the signing secret."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={digest}",
        "Content-Type": content_type,
    }


def event_body(event: dict[str, Any], event_id: str | None = None) -> str:
    return json.dumps(
        {
            "token": "legacy",
            "team_id": TEAM,
            "api_app_id": "A1",
            "type": "event_callback",
            "event_id": event_id or f"Ev{next_ts()}",
            "event_time": int(time.time()),
            "event": event,
        }
    )


def mention(text: str, channel: str = "C1", **extra: Any) -> dict[str, Any]:
    ts = next_ts()
    return {
        "type": "app_mention",
        "user": "U1",
        "text": f"<@{BOT_USER}> {text}",
        "ts": ts,
        "event_ts": ts,
        "channel": channel,
        **extra,
    }


def direct_message(text: str, **extra: Any) -> dict[str, Any]:
    ts = next_ts()
    return {
        "type": "message",
        "channel_type": "im",
        "channel": "D1",
        "user": "U1",
        "text": text,
        "ts": ts,
        "event_ts": ts,
        **extra,
    }


def command_body(text: str, response_url: str, **extra: str) -> str:
    return urlencode(
        {
            **extra,
            "token": "legacy",
            "team_id": TEAM,
            "channel_id": "C1",
            "user_id": "U1",
            "command": "/kbq",
            "text": text,
            "response_url": response_url,
            "trigger_id": "t1",
            "api_app_id": "A1",
        }
    )


def click_body(action_id: str, answer_id: str, message: dict[str, Any], response_url: str) -> str:
    """A block_actions payload as Slack sends it: the whole clicked message comes along."""
    payload = {
        "type": "block_actions",
        "team": {"id": TEAM},
        "user": {"id": "U1"},
        "api_app_id": "A1",
        "token": "legacy",
        "trigger_id": "t1",
        "channel": {"id": "C1"},
        "response_url": response_url,
        "container": {"type": "message", "message_ts": message.get("ts", "1.0"), "channel_id": "C1"},
        "message": {"type": "message", "user": BOT_USER, "bot_id": BOT_ID, **message},
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "kbq_feedback",
                "value": answer_id,
                "action_ts": str(time.time()),
            }
        ],
    }
    return urlencode({"payload": json.dumps(payload)})


@dataclass
class SocketModeServer:
    """Slack's Socket Mode end: says hello, sends ``envelopes`` to each connection, records the replies."""

    envelopes: list[dict[str, Any]]
    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def handle(self, ws: Any) -> None:
        ws.send(json.dumps({"type": "hello", "num_connections": 1}))
        for envelope in self.envelopes:
            ws.send(json.dumps(envelope))
        for message in ws:
            with self.changed:
                self.received.append(json.loads(message))
                self.changed.notify_all()

    def wait_for_acks(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.received) >= count, timeout), self.received
            return list(self.received)


@contextmanager
def socket_mode(envelopes: list[dict[str, Any]]) -> Iterator[SocketModeServer]:
    from websockets.sync.server import serve

    server = SocketModeServer(envelopes)
    with serve(server.handle, "127.0.0.1", 0) as ws_server:
        server.url = f"ws://127.0.0.1:{ws_server.socket.getsockname()[1]}/link"
        thread = threading.Thread(target=ws_server.serve_forever, daemon=True)
        thread.start()
        try:
            yield server
        finally:
            ws_server.shutdown()


def envelope(body: str, retry_attempt: int = 0) -> dict[str, Any]:
    return {
        "envelope_id": f"env-{next_ts()}",
        "type": "events_api",
        "payload": json.loads(body),
        "accepts_response_payload": False,
        "retry_attempt": retry_attempt,
        "retry_reason": "",
    }
