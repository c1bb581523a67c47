"""Citations: a chosen sentence cited exactly, with its source, its community or correction label and what it
corrects; and the check that a citation's quote is exactly the span of its document it names."""

from __future__ import annotations

from kb.candidates import Candidate
from kb.store import Store, comments
from kb.types import OFFICIAL_KINDS, Chunk, Citation, Document, Hit


def verify(citation: Citation, doc: Document | None) -> bool:
    """A citation is valid only if its quote is exactly the cited span of its document ``doc``."""
    return (
        doc is not None
        and 0 <= citation.start < citation.end <= len(doc.text)
        and doc.text[citation.start : citation.end] == citation.quote
    )


def cite(store: Store, n: int, cand: Candidate, hits: list[Hit]) -> Citation:
    """Citation ``n`` of sentence ``cand``, scored as retrieval scored its passage among ``hits``."""
    chunk = store.chunk(cand.row)
    doc = store.document(chunk.doc_id)
    assert doc is not None, chunk.doc_id  # a live chunk's document is stored with it
    score = next((h.score for h in hits if h.row == cand.row), 0.0)
    first = _corrected(store, chunk)
    return Citation(
        n=n,
        chunk_id=chunk.chunk_id,
        doc_id=doc.doc_id,
        source=doc.kind,
        title=doc.title,
        section=chunk.section,
        url=chunk.origin.url or doc.url,
        author=chunk.origin.author or doc.author,
        date=chunk.origin.date or doc.date,
        lang=cand.lang,
        quote=doc.text[cand.start : cand.end],
        start=cand.start,
        end=cand.end,
        score=round(score, 4),
        community=chunk.kind == "thread",
        label="official" if chunk.kind in OFFICIAL_KINDS else "correction" if first else "community",
        corrects={"chunk_id": first.chunk_id, "author": first.origin.author, "url": first.origin.url}
        if first
        else None,
    )


def _corrected(store: Store, chunk: Chunk) -> Chunk | None:
    """The first earlier comment of the same thread whose claim ``chunk`` corrects."""
    if not chunk.origin.corrects:
        return None
    by_id = comments(store, chunk.doc_id)
    return next((by_id[cid][1] for cid in chunk.origin.corrects if cid in by_id), None)
