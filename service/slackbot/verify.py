"""Slack's request signature, checked on the raw bytes before anything parses them.

Slack signs ``v0:{timestamp}:{body}`` with the app's signing secret (HMAC-SHA256) and sends the timestamp
and ``v0=<hex>`` in headers. Both headers are checked for shape first (a timestamp of 1-12 ASCII digits, a
signature of 64 hex digits), so no caller-chosen text ever reaches ``int()`` or a JSON parser unsigned.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time

MAX_AGE = 300  # seconds: Slack's own replay window
_TIMESTAMP = re.compile(r"[0-9]{1,12}", re.ASCII)
_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}", re.ASCII)


def signed_by_slack(
    secret: str, body: bytes, timestamp: str | None, signature: str | None, now: float | None = None
) -> bool:
    """True when ``signature`` is Slack's over ``body`` at ``timestamp``, and ``timestamp`` is recent."""
    if not timestamp or not signature:
        return False
    if not _TIMESTAMP.fullmatch(timestamp) or not _SIGNATURE.fullmatch(signature):
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > MAX_AGE:
        return False
    message = b"v0:" + timestamp.encode() + b":" + body
    expected = "v0=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)
