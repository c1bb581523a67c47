"""Short-lived widget tokens: the browser holds one of these instead of an API key.

A token is ``kbqw1.<origin, base64url>.<expiry, unix seconds>.<HMAC-SHA256, base64url>``, signed over the
origin and the expiry with the widget secret. It is valid until it expires, only while its origin is still
allowed (KB_CORS_ORIGINS), only from a page of that origin (the request's ``Origin`` header), and only if it
claims no longer a life than KB_WIDGET_TOKEN_TTL (so a leaked secret or a bug cannot mint a token for years).
Its shape is checked before anything is decoded: every part has a bounded length and alphabet.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import re
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from kb.config import WIDGET_TOKEN_TTL, Settings

log = logging.getLogger(__name__)
PREFIX = "kbqw1"
TTL_SECONDS = WIDGET_TOKEN_TTL
CLOCK_SKEW = 60  # seconds another replica's clock may run ahead when it mints a token
# origin: at most 400 base64url characters; expiry: 1-12 ASCII digits; signature: one SHA-256, 43 characters
_SHAPE = re.compile(r"kbqw1\.([A-Za-z0-9_-]{1,400})\.([0-9]{1,12})\.([A-Za-z0-9_-]{43})", re.ASCII)
_process_secret: bytes | None = None


class TokenError(Exception):
    """A widget token that cannot be accepted; the message says why, for the 401 body."""


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of a URL or origin, lower-cased, without path or trailing slash."""
    parts = urlsplit(url.strip())
    if not parts.scheme or not parts.netloc:
        return ""
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


def is_widget_token(credential: str | None) -> bool:
    return bool(credential) and credential.startswith(PREFIX + ".")  # type: ignore[union-attr]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _random_secret() -> bytes:
    """One random secret per process, so every app built in it accepts the others' tokens."""
    global _process_secret
    if _process_secret is None:
        _process_secret = secrets.token_bytes(32)
    return _process_secret


@dataclass(frozen=True)
class WidgetTokens:
    """Issues and checks widget tokens for a fixed set of allowed origins."""

    secret: bytes
    allowed: frozenset[str]
    ttl: int = TTL_SECONDS

    @classmethod
    def from_settings(cls, settings: Settings) -> WidgetTokens:
        allowed = frozenset(filter(None, (origin_of(o) for o in settings.cors_origins if o != "*")))
        ttl = max(1, settings.widget_token_ttl)
        if settings.widget_secret:
            return cls(settings.widget_secret.encode(), allowed, ttl)
        secret = _random_secret()
        fingerprint = hashlib.sha256(secret).hexdigest()[:12]
        # The secret itself never reaches the log; its fingerprint tells workers with different secrets apart.
        level = logging.WARNING if settings.api_keys else logging.DEBUG
        log.log(
            level,
            "KB_WIDGET_SECRET is not set: widget tokens are signed with a random per-process secret "
            "(fingerprint %s); they stop working on restart and are not shared between workers",
            fingerprint,
        )
        return cls(secret, allowed, ttl)

    def _sign(self, origin: str, expires: int) -> bytes:
        message = f"{PREFIX}\n{origin}\n{expires}".encode()
        return hmac.new(self.secret, message, hashlib.sha256).digest()

    def issue(self, origin: str, now: float | None = None) -> str:
        """A token for pages of ``origin``; raises TokenError when the origin is not allowed."""
        origin = origin_of(origin)
        if origin not in self.allowed:
            raise TokenError(f"origin {origin or '(none)'} is not listed in KB_CORS_ORIGINS")
        expires = int(time.time() if now is None else now) + self.ttl
        return f"{PREFIX}.{_b64(origin.encode())}.{expires}.{_b64(self._sign(origin, expires))}"

    def verify(self, token: str, request_origin: str | None, now: float | None = None) -> str:
        """The token's origin, once its signature, expiry and origin check out; else TokenError.

        ``request_origin`` is the request's Origin header; None skips that check (for links the browser
        follows, which carry no Origin header).
        """
        origin, expires = self._open(token)
        now = time.time() if now is None else now
        if expires <= now:
            raise TokenError("the widget token has expired; reload the page for a new one")
        if expires - now > self.ttl + CLOCK_SKEW:
            raise TokenError(f"the widget token claims a lifetime over the {self.ttl} s allowed")
        if origin not in self.allowed:
            raise TokenError("the widget token's origin is no longer allowed")
        if request_origin is not None and not hmac.compare_digest(
            origin.encode(), origin_of(request_origin).encode()
        ):
            raise TokenError("the widget token was issued for another origin")
        return origin

    def _open(self, token: str) -> tuple[str, int]:
        """The origin and expiry of a well-formed token with a valid signature."""
        shape = _SHAPE.fullmatch(token)
        if shape is None:
            raise TokenError("the widget token is malformed")
        try:
            origin, signature = _unb64(shape[1]).decode(), _unb64(shape[3])
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise TokenError("the widget token is malformed") from None
        expires = int(shape[2])
        if not hmac.compare_digest(signature, self._sign(origin, expires)):
            raise TokenError("the widget token's signature is invalid")
        return origin, expires
