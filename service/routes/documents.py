"""GET /v1/documents and /v1/documents/{doc_id}: the texts citations point into."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Query

from kb.knowledge import KnowledgeBase
from kb.types import Document
from service.deps import KnowledgeDep
from service.errors import ApiError, not_found
from service.models import DocumentDetailOut, DocumentOut

router = APIRouter(prefix="/v1")
BLANK_LINE = re.compile(r"\n[ \t]*\n")


def paragraph_bounds(text: str, start: int, end: int) -> tuple[int, int]:
    """Widen ``[start, end)`` to the blank lines around it, without the surrounding whitespace."""
    before = [m.end() for m in BLANK_LINE.finditer(text, 0, start + 1) if m.end() <= start]
    p_start = before[-1] if before else 0
    after = BLANK_LINE.search(text, end)
    p_end = after.start() if after else len(text)
    while p_start < start and text[p_start].isspace():
        p_start += 1
    while p_end > end and text[p_end - 1].isspace():
        p_end -= 1
    return p_start, p_end


def _summary(kb: KnowledgeBase, doc: Document) -> dict:
    chunks = kb.index.manifest["documents"].get(doc.doc_id, {}).get("chunks", 0)
    return {
        "doc_id": doc.doc_id,
        "kind": doc.kind,
        "title": doc.title,
        "lang": doc.lang,
        "date": doc.date,
        "url": doc.url,
        "chunks": chunks,
    }


def _span(doc: Document, start: int | None, end: int | None) -> dict:
    if start is None and end is None:
        return {}
    if start is None or end is None or not 0 <= start < end <= len(doc.text):
        raise ApiError(
            422,
            "invalid_range",
            f"start and end must both be given, with 0 <= start < end <= "
            f"{len(doc.text)} (the length of {doc.doc_id})",
        )
    p_start, p_end = paragraph_bounds(doc.text, start, end)
    return {
        "span": {"start": start, "end": end, "text": doc.text[start:end]},
        "paragraph": {"start": p_start, "end": p_end, "text": doc.text[p_start:p_end]},
    }


@router.get("/documents", response_model=list[DocumentOut], summary="List the indexed documents")
def documents(kb: KnowledgeDep) -> list[dict]:
    return [_summary(kb, doc) for doc in kb.documents()]


@router.get(
    "/documents/{doc_id:path}",
    response_model=DocumentDetailOut,
    summary="One document's canonical text, optionally with a span and its paragraph",
)
def document(
    doc_id: str,
    kb: KnowledgeDep,
    start: Annotated[int | None, Query(ge=0)] = None,
    end: Annotated[int | None, Query(ge=0)] = None,
) -> dict:
    doc = kb.document(doc_id)
    if doc is None:
        raise not_found(f"document {doc_id!r}")
    return {**_summary(kb, doc), "author": doc.author, "text": doc.text, **_span(doc, start, end)}
