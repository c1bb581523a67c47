"""POST /v1/ask and its server-sent-events twin /v1/ask/stream."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from kb.types import Answer
from service.deps import AskBody, StateDep
from service.models import AnswerOut, AskRequest
from service.state import AppState

router = APIRouter(prefix="/v1")

# One CJK character, or a run of other non-space characters with a few spaces after it, or spaces; a long run
# (a device path, an SSM document's name, a code block's indentation) goes in pieces of at most 24 characters, so
# none holds up the stream.
_PIECE = re.compile(
    r"[\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef\u3000-\u303f]|[^\s\u2e80-\u9fff\uf900-\ufaff"
    r"\uff00-\uffef\u3000-\u303f]{1,24}\s{0,4}|\s{1,24}"
)
SSE_DOC = {
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
    "description": "Events `meta` (id, question, the answer's lang), `citation` (one per citation), "
    "`delta` (answer text pieces), `done`.",
}


def _answer(state: AppState, body: AskRequest) -> Answer:
    return state.answer(body.question, body.client or "api", body.sources, body.langs, body.lang)


def pieces(text: str) -> list[str]:
    """Small pieces (words, single CJK characters) whose concatenation is exactly ``text``."""
    return _PIECE.findall(text)


def sse(event: str, data: object) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def events(answer: Answer) -> Iterator[str]:
    yield sse("meta", {"id": answer.id, "question": answer.question, "lang": answer.lang})
    for citation in answer.citations:
        yield sse("citation", citation.to_dict())
    for piece in pieces(answer.answer):
        yield sse("delta", {"text": piece})
    yield sse("done", {"id": answer.id, "confidence": answer.confidence, "abstained": answer.abstained})


async def _replay(items: list[str]) -> AsyncIterator[str]:
    # the answer is complete before streaming starts; an async iterator spares a thread hop per event
    for item in items:
        yield item


@router.post("/ask", response_model=AnswerOut, summary="Answer a question with cited sentences, or abstain")
def ask(body: AskBody, state: StateDep) -> dict:
    return _answer(state, body).to_dict()


@router.post(
    "/ask/stream",
    response_class=StreamingResponse,
    responses={200: SSE_DOC},
    summary="The same answer as /v1/ask, as server-sent events",
)
def ask_stream(body: AskBody, state: StateDep) -> StreamingResponse:
    return StreamingResponse(
        _replay(list(events(_answer(state, body)))),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
