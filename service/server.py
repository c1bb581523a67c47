"""How kbq runs under uvicorn: the options `kbq serve` (one worker or several) and the tests share.

uvicorn never reads proxy headers itself (``proxy_headers=False``): the app trusts ``X-Forwarded-For`` only
from the addresses in KB_TRUSTED_PROXIES (service/app.py). A request uvicorn cannot parse (a bad
Content-Length, headers over the limit) gets the service's JSON error shape, not uvicorn's plain text.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
from typing import TYPE_CHECKING, Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from kb.config import Settings

if TYPE_CHECKING:
    from kb.knowledge import KnowledgeBase

MAX_HEADER_BYTES = 64 * 1024  # request line and headers together; more is a 400
LINGER_SECONDS = 2.0  # how long a refused connection's remaining input is read and dropped
# uvicorn's supervisor kills a worker that does not answer its ping within this many seconds (default 5), and
# a killed worker resets the connections it holds. Loading the index and the models holds the GIL for long
# stretches, which on a loaded machine can keep the ping's thread waiting past 5 s. (One CI run saw a reset
# connection with two workers; it did not reproduce, under load or not, so this is the likely cause, unproven.)
WORKER_HEALTHCHECK_S = 60
# On SIGTERM a worker stops taking connections and waits for the open ones to finish; a client that never
# finishes sending its request held it (and a supervisor's restart) without end, with one worker or two
# (tests/service/test_hardening_e2e.py). After this many seconds what is still open is cancelled.
GRACEFUL_SHUTDOWN_S = 10
APP_FACTORY = "service.app:app_from_env"  # what each worker process of `kbq serve --workers N` imports
_BAD_REQUEST = json.dumps(
    {
        "error": {
            "code": "invalid_request",
            "message": "the request is not valid HTTP/1.1 (malformed or oversized headers, or a bad "
            f"Content-Length; request line and headers may take at most {MAX_HEADER_BYTES} bytes)",
        }
    }
).encode()


class JsonErrorsH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, answering what it cannot parse with the JSON error shape.

    The answer is followed by a lingering close (as nginx does): the write side is shut after the answer and
    what the client still sends is read and dropped for a moment, so a client that sent more than the header
    limit gets the answer instead of a connection reset."""

    _refused = False

    def connection_made(self, transport: Any) -> None:
        # asyncio turns Nagle off only on sockets it knows are TCP, and the listening socket `kbq serve
        # --workers N` hands its workers comes back with protocol 0: each answer's last segment then waited
        # for the client's delayed ACK, 40 ms a request
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)

    def send_400_response(self, msg: str) -> None:
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(_BAD_REQUEST)).encode()),
            (b"connection", b"close"),
        ]
        for event in (
            h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
            h11.Data(data=_BAD_REQUEST),
            h11.EndOfMessage(),
        ):
            self.transport.write(self.conn.send(event))
        self._refused = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(LINGER_SECONDS, self.transport.close)
        else:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if not self._refused:
            super().data_received(data)


def worker_environment(settings: Settings) -> dict[str, str]:
    """What the worker processes of ``kbq serve --workers N`` need in their environment besides the parent's:
    the worker count (so they share the rate-limit file) and, when KB_WIDGET_SECRET is not set, one random
    secret for all of them, so a widget token minted by one verifies in every other (until a restart)."""
    shared = {"KB_WORKERS": str(settings.workers)}
    if not settings.widget_secret:
        shared["KB_WIDGET_SECRET"] = secrets.token_urlsafe(32)
    return shared


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run`` / ``uvicorn.Config``, whatever the app and the workers."""
    return {
        "http": JsonErrorsH11Protocol,
        "proxy_headers": False,
        "server_header": False,
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
        "log_level": settings.log_level,
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_S,
    }


def run(settings: Settings, kb: KnowledgeBase, host: str, port: int) -> None:
    """Serve until stopped: ``kb`` in this process for one worker; for several, ``settings.workers`` processes
    that each load the index (``kb`` only proved it loads) and share a widget secret and the rate limits."""
    import uvicorn

    if settings.workers == 1:
        from service.app import create_app

        uvicorn.run(create_app(settings, kb), host=host, port=port, **uvicorn_options(settings))
        return
    del kb
    os.environ.update(worker_environment(settings))
    uvicorn.run(
        APP_FACTORY,
        factory=True,
        host=host,
        port=port,
        workers=settings.workers,
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_S,
        **uvicorn_options(settings),
    )
