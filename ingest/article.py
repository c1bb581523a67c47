"""Long-form articles: Markdown with front matter, chunked by heading, then by block and sentence."""

from __future__ import annotations

from ingest.chunking import ChunkMaker, pack_and_split
from ingest.errors import IngestError
from ingest.markdown import blocks, split_front_matter
from kb.text import detect_lang
from kb.tuning import INDEX
from kb.types import Chunk, Document


def markdown_document(doc_id: str, kind: str, raw: str) -> tuple[Document, dict]:
    """The document and its front matter (for fields beyond the Document's own, such as ``site``)."""
    meta, body = split_front_matter(raw)
    if not body.strip():
        raise IngestError("no text after the front matter")
    title = str(meta.get("title") or "").strip() or _first_heading(body) or doc_id
    lang = str(meta.get("lang") or detect_lang(body))
    document = Document(
        doc_id=doc_id,
        kind=kind,
        title=title,
        lang=lang,
        text=body,
        url=_opt(meta.get("url")),
        author=_opt(meta.get("author")),
        date=_opt(meta.get("date")),
    )
    return document, meta


def parse_article(doc_id: str, raw: str) -> tuple[Document, list[Chunk]]:
    doc, meta = markdown_document(doc_id, "article", raw)
    site = str(meta.get("site") or "").strip()
    maker = ChunkMaker(doc.doc_id, doc.kind, doc.text, doc.lang)
    max_chars = INDEX.splitter.article_max_chars
    chunks: list[Chunk] = []
    path: list[tuple[int, str]] = []
    section_blocks: list[tuple[int, int]] = []

    def flush() -> None:
        section = " › ".join(title for _, title in path)
        for start, end in pack_and_split(doc.text, section_blocks, max_chars):
            context = " · ".join(part for part in (site, doc.title, section) if part)
            chunks.append(maker.make(start, end, section=section, context=context))
        section_blocks.clear()

    for block in blocks(doc.text):
        if block.type == "heading":
            flush()
            path = [(lvl, t) for lvl, t in path if lvl < block.level] + [(block.level, block.heading)]
        elif block.type != "hr":
            section_blocks.append((block.start, block.end))
    flush()
    return doc, chunks


def _first_heading(body: str) -> str:
    for block in blocks(body):
        if block.type == "heading":
            return block.heading
    return ""


def _opt(value: object) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text or None
