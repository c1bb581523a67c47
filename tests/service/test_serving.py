"""How `kbq serve` runs answers: they leave at once (Nagle's algorithm off on every connection, including
those the workers of `kbq serve --workers N` accept on a socket asyncio does not know is TCP: 40 ms a
request before), and with a worker per core each worker answers one question at a time."""

from __future__ import annotations

import socket
import threading
from typing import Any

import pytest
from uvicorn.protocols.http.h11_impl import H11Protocol

from kb.config import Settings
from service.server import JsonErrorsH11Protocol
from service.state import AppState


class _Transport:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.sock if name == "socket" else default


def test_connections_get_tcp_nodelay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(H11Protocol, "connection_made", lambda self, transport: None)
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
        shared = socket.socket(fileno=accepted.detach())  # as a worker sees it: protocol 0
        with client, shared:
            assert shared.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
            JsonErrorsH11Protocol.connection_made(object.__new__(JsonErrorsH11Protocol), _Transport(shared))
            assert shared.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1


def test_several_workers_answer_one_question_at_a_time_and_one_worker_overlaps(tmp_path: Any) -> None:
    several = AppState.build(Settings(index_dir=tmp_path / "index", workers=2))
    assert isinstance(several._one_at_a_time, type(threading.Lock()))
    one = AppState.build(Settings(index_dir=tmp_path / "index", workers=1))
    assert not isinstance(one._one_at_a_time, type(threading.Lock()))
