"""FAQ pages: one '##' heading per question; a chunk is the question with its answer."""

from __future__ import annotations

import re

from ingest.article import markdown_document
from ingest.chunking import SPLITTER, ChunkMaker, split_span
from ingest.markdown import Block, blocks
from kb.types import Chunk, Document

_SOURCE = re.compile(r"^(?:Source|Sources|来源)\s*[:：]\s*(?P<rest>.+)$", re.S)
_URL = re.compile(r"https?://[^\s,，)]+")
_DATE = re.compile(r"\b\d{4}-\d{2}(?:-\d{2})?\b")


def parse_faq(doc_id: str, raw: str) -> tuple[Document, list[Chunk]]:
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
        chunks.extend(_entry_chunks(doc, maker, heading, body))
    return doc, chunks


def _entry_chunks(doc: Document, maker: ChunkMaker, heading: Block | None, body: list[Block]) -> list[Chunk]:
    meta: dict[str, str] = {}
    if body and (m := _SOURCE.match(doc.text[body[-1].start : body[-1].end])):
        meta = _source_meta(m.group("rest"))
        body = body[:-1]
    if heading is None and not body:
        return []
    question = heading.heading if heading else ""
    start = heading.heading_start if heading else body[0].start
    end = body[-1].end if body else heading.end  # type: ignore[union-attr]
    max_chars = int(SPLITTER["faq_max_chars"])
    if end - start <= max_chars or not body:
        return [maker.make(start, end, section=question, meta=meta)]
    pieces = split_span(doc.text, body[0].start, end, max_chars, int(SPLITTER["overlap_sentences"]))
    first_end = pieces[0][1]
    chunks = [maker.make(start, first_end, section=question, meta=meta)]
    chunks += [maker.make(a, b, section=question, context=question, meta=meta) for a, b in pieces[1:]]
    return chunks


def _source_meta(rest: str) -> dict[str, str]:
    meta = {"source_line": rest.strip()}
    if url := _URL.search(rest):
        meta["url"] = url.group(0).rstrip(".,")
    if date := _DATE.search(rest):
        meta["date"] = date.group(0)
    return meta
