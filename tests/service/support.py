"""Helpers shared by the service tests: read server-sent events, check citations against documents."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from kb.config import Settings
from service.app import create_app
from service.server import uvicorn_options

QUESTIONS = [
    "Which regions had C5 at launch?",
    "Why did AWS move from Xen to KVM?",
    "换到 C5 后根盘为什么变成 /dev/nvme0n1?",
    "What does ENA is required for the c5.large instance type mean?",
]
UNANSWERABLE = "What is the capital of France?"


def parse_sse(lines: Iterable[str]) -> list[tuple[str, Any]]:
    """(event, decoded data) pairs from the lines of a text/event-stream body."""
    events, event, data = [], "message", []
    for line in lines:
        if not line:
            if data:
                events.append((event, json.loads("\n".join(data))))
            event, data = "message", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    if data:
        events.append((event, json.loads("\n".join(data))))
    return events


def assemble(events: list[tuple[str, Any]]) -> dict[str, Any]:
    """The answer object a stream adds up to, checking the order meta, citation*, delta*, done."""
    names = [name for name, _ in events]
    assert names[0] == "meta" and names[-1] == "done", names
    body = names[1:-1]
    n_citations = body.count("citation")
    assert body == ["citation"] * n_citations + ["delta"] * (len(body) - n_citations), names
    meta, done = events[0][1], events[-1][1]
    assert meta["id"] == done["id"]
    return {
        "id": meta["id"],
        "question": meta["question"],
        "lang": meta["lang"],
        "answer": "".join(data["text"] for name, data in events if name == "delta"),
        "citations": [data for name, data in events if name == "citation"],
        "confidence": done["confidence"],
        "abstained": done["abstained"],
    }


def same_answer(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal apart from the answer id (each answer is its own logged event)."""
    return {k: v for k, v in a.items() if k != "id"} == {k: v for k, v in b.items() if k != "id"}


def check_citations(answer: dict[str, Any], get_document: Callable[[str], dict[str, Any]]) -> None:
    """Every [n] names a citation; every quote is exactly its document's text[start:end]."""
    numbers = {c["n"] for c in answer["citations"]}
    for n in re.findall(r"\[(\d+)\]", answer["answer"]):
        assert int(n) in numbers, f"[{n}] names no citation in {answer}"
    texts: dict[str, str] = {}
    for c in answer["citations"]:
        if c["doc_id"] not in texts:
            texts[c["doc_id"]] = get_document(c["doc_id"])["text"]
        assert texts[c["doc_id"]][c["start"] : c["end"]] == c["quote"], c


@contextmanager
def serve(settings: Settings | Callable[[str], Settings]) -> Iterator[str]:
    """A real uvicorn server on 127.0.0.1 and a free port, in a thread; yields its URL. ``settings`` may be
    a function of that URL, for settings that name the server's own origin."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    resolved = settings(url) if callable(settings) else settings
    options = {**uvicorn_options(resolved), "log_level": "warning"}  # as `kbq serve` runs it
    server = uvicorn.Server(uvicorn.Config(create_app(resolved), lifespan="on", **options))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        assert not thread.is_alive(), "uvicorn did not stop"
