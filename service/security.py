"""API keys and a request body size limit. (The rate limit is service/ratelimit.py.)"""

from __future__ import annotations

import hashlib
import hmac
import math

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import error_response


def key_id(key: str) -> str:
    """A short, non-reversible name for an API key, safe to use as a bucket name or in logs."""
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:12]


def valid_key(presented: str | None, keys: tuple[str, ...]) -> bool:
    """Constant-time comparison against every configured key, so timing reveals nothing about which matched."""
    if not presented:
        return False
    matches = [hmac.compare_digest(presented.encode(), key.encode()) for key in keys]
    return any(matches)


def retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


class BodyLimitMiddleware:
    """Answer 413 when a request body is larger than ``max_bytes``, by its Content-Length or its actual size.

    The body is read (up to the limit) before the app sees it, so a lying or missing Content-Length
    cannot push more than ``max_bytes`` into a handler.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, prefix_limits: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.prefix_limits = prefix_limits or {}

    def limit_for(self, path: str) -> int:
        """Signed Slack callbacks carry whole messages, so some prefixes get their own limit."""
        return next(
            (n for prefix, n in self.prefix_limits.items() if path.startswith(prefix)), self.max_bytes
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        declared = dict(scope["headers"]).get(b"content-length")
        # a length of 19 digits or more is over any limit (and a 5,000-digit one would make int() raise)
        if declared is not None and (not declared.isdigit() or len(declared) > 18 or int(declared) > limit):
            await self._reject(scope, receive, send, limit)
            return
        body, more, early = await self._read(receive, limit)
        if more:
            await self._reject(scope, receive, send, limit)
            return
        await self.app(scope, self._replay(body, early, receive), send)

    async def _read(self, receive: Receive, limit: int) -> tuple[bytes, bool, Message | None]:
        """Read the body; ``more`` is True when it passed the limit; ``early`` is a disconnect seen meanwhile."""
        parts: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(parts), False, message
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return b"", True, None
            parts.append(chunk)
            if not message.get("more_body", False):
                return b"".join(parts), False, None

    @staticmethod
    def _replay(body: bytes, early: Message | None, receive: Receive) -> Receive:
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return early if early is not None else await receive()

        return replay

    async def _reject(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        message = f"the request body is larger than the limit of {limit} bytes"
        await error_response(413, "payload_too_large", message, {"Connection": "close"})(scope, receive, send)
