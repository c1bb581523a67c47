"""FAQ pages: one '##' heading per question; a chunk is the question with its answer.

Each entry carries a key written as a heading id (``## Where can I launch C5? {#regions}``) that its twin
in the other language shares, so the answerer knows an entry's counterpart instead of guessing it. The
marker is not part of the canonical text."""

from __future__ import annotations

import re

from ingest.article import markdown_document
from ingest.chunking import ChunkMaker, split_span
from ingest.markdown import Block, blocks
from kb.tuning import INDEX
from kb.types import Chunk, Document, Provenance

_SOURCE = re.compile(r"^(?:Source|Sources|来源)\s*[:：]\s*(?P<rest>.+)$", re.S)
_URL = re.compile(r"https?://[^\s,，)]+")
_DATE = re.compile(r"\b\d{4}-\d{2}(?:-\d{2})?\b")
_ENTRY_KEY = re.compile(r"^(#{1,6}[ \t].*?)[ \t]+\{#(?P<key>[A-Za-z0-9_.-]+)\}[ \t]*$", re.M)


def entry_keys(raw: str) -> tuple[str, dict[str, str]]:
    """The page without its heading-id markers, and each marked heading's key by heading text."""
    keys = {m.group(1).lstrip("#").strip(): m.group("key") for m in _ENTRY_KEY.finditer(raw)}
    return _ENTRY_KEY.sub(r"\1", raw), keys


def parse_faq(doc_id: str, raw: str) -> tuple[Document, list[Chunk]]:
    raw, keys = entry_keys(raw)
    doc, _ = markdown_document(doc_id, "faq", raw)
    maker = ChunkMaker(doc.doc_id, doc.kind, doc.text, doc.lang)
    chunks: list[Chunk] = []
    entries: list[tuple[Block | None, list[Block]]] = [(None, [])]
    for block in blocks(doc.text):
        if block.type == "heading" and block.level <= 2:
            entries.append((block, []))
        else:
            entries[-1][1].append(block)
    for heading, body in entries:
        key = keys.get(heading.heading, "") if heading else ""
        chunks.extend(_entry_chunks(doc, maker, heading, body, key))
    return doc, chunks


def _entry_chunks(
    doc: Document, maker: ChunkMaker, heading: Block | None, body: list[Block], key: str
) -> list[Chunk]:
    origin = Provenance(entry_key=key)
    if body and (m := _SOURCE.match(doc.text[body[-1].start : body[-1].end])):
        origin = _source(m.group("rest"), key)
        body = body[:-1]
    if heading is None and not body:
        return []
    question = heading.heading if heading else ""
    start = heading.heading_start if heading else body[0].start
    end = body[-1].end if body else heading.end  # type: ignore[union-attr]
    max_chars = INDEX.splitter.faq_max_chars
    if end - start <= max_chars or not body:
        return [maker.make(start, end, section=question, origin=origin)]
    pieces = split_span(doc.text, body[0].start, end, max_chars, INDEX.splitter.overlap_sentences)
    first_end = pieces[0][1]
    chunks = [maker.make(start, first_end, section=question, origin=origin)]
    chunks += [maker.make(a, b, section=question, context=question, origin=origin) for a, b in pieces[1:]]
    return chunks


def _source(rest: str, key: str) -> Provenance:
    url = _URL.search(rest)
    date = _DATE.search(rest)
    return Provenance(
        url=url.group(0).rstrip(".,") if url else None,
        date=date.group(0) if date else None,
        source_line=rest.strip(),
        entry_key=key,
    )
