"""GET /v1/documents and /v1/documents/{doc_id}: the texts citations point into."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from kb.knowledge import KnowledgeBase
from kb.types import Document
from service.deps import KnowledgeDep
from service.errors import not_found
from service.models import DocumentDetailOut, DocumentOut
from service.spans import checked_span, paragraph_bounds

router = APIRouter(prefix="/v1")


def _summary(kb: KnowledgeBase, doc: Document) -> dict:
    chunks = kb.chunk_count(doc.doc_id)
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
    span = checked_span(doc, start, end)
    if span is None:
        return {}
    (a, b), (p_start, p_end) = span, paragraph_bounds(doc.text, *span)
    return {
        "span": {"start": a, "end": b, "text": doc.text[a:b]},
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
