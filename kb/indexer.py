"""Ingest into a store, incrementally and streaming.

Only added or changed documents are parsed and embedded, a batch at a time, and handed to the store's
writer (kb/store.py); removed ones are deleted; the writer publishes the new version at once at the end, so
a reader never sees a half-written index and a crash mid-ingest leaves the old one serving. An embedder,
splitter or format change rebuilds everything.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

from kb.batch_embed import EmbedStats, embed_documents
from kb.config import INGEST_LOCK_TIMEOUT, Settings
from kb.embed import Embedder
from kb.fsutil import exclusive_lock
from kb.store import DocumentRecord, StoreWriter, indexed_text
from kb.stores import open_writer
from kb.text import sentence_spans
from kb.tuning import INDEX
from kb.types import Chunk, Document

EMBED_BATCH = 256  # documents embedded and written together: large batches for the encoders, bounded memory


@dataclass(frozen=True)
class SourceRecord:
    """What the indexer needs to know about one source without parsing it."""

    doc_id: str
    digest: str
    load: Callable[[], tuple[Document, list[Chunk]]]


@dataclass
class UpdateReport:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    embedded_chunks: int = 0
    embedding: list[dict[str, object]] = field(default_factory=list)  # per model: kb.batch_embed.EmbedStats
    rebuilt: str | None = None
    version: str = ""


def update_index(
    target: Settings | Path,
    sources: list[SourceRecord],
    embedders: list[Embedder],
    parser_version: str = "",
    rebuild: bool = False,
    progress: Callable[[int, int], None] | None = None,
    lock_timeout: float = INGEST_LOCK_TIMEOUT,
    on_wait: Callable[[str], None] | None = None,
    sentence_only: Collection[str] = (),
) -> UpdateReport:
    """Bring the store ``target`` names (settings, or a local index folder) in line with ``sources``:
    embed only added or changed documents, drop removed ones, keep the old version of a document whose
    source fails to load. Models in ``sentence_only`` embed answer units only (kb.store.chunk_models).

    One writer at a time: another ingest waits up to ``lock_timeout`` seconds (``on_wait`` is told who it
    waits for), then raises ``kb.fsutil.LockTimeout``."""
    settings = target if isinstance(target, Settings) else Settings(index_dir=Path(target))
    report = UpdateReport()
    with writer_lock(settings.index_dir, lock_timeout, on_wait):
        writer = open_writer(settings, embedders, parser_version, rebuild, sentence_only)
        try:
            _update(writer, sources, embedders, report, progress, frozenset(sentence_only))
        finally:
            writer.close()
    return report


def _update(
    writer: StoreWriter,
    sources: list[SourceRecord],
    embedders: list[Embedder],
    report: UpdateReport,
    progress: Callable[[int, int], None] | None,
    sentence_only: frozenset[str],
) -> None:
    report.rebuilt = writer.rebuilt
    previous = writer.digests()
    pending: list[DocumentRecord] = []
    stats: list[list[EmbedStats]] = []
    seen = set()
    ordered = sorted(sources, key=lambda s: s.doc_id)  # rows in document-id order, as a merge writes them
    for i, source in enumerate(ordered):
        seen.add(source.doc_id)
        old = previous.get(source.doc_id)
        if old == source.digest:
            report.unchanged.append(source.doc_id)
        else:
            try:
                document, chunks = source.load()
            except Exception as exc:  # a bad source must never stop the others
                report.failed.append((source.doc_id, str(exc)))
                continue
            pending.append(_unembedded(document, chunks, source.digest))
            report.embedded_chunks += len(chunks)
            (report.changed if old is not None else report.added).append(source.doc_id)
            if len(pending) >= EMBED_BATCH:
                stats.append(_embed(pending, embedders, sentence_only))
                writer.upsert(pending)
                pending = []
        if progress:
            progress(i + 1, len(ordered))
    if pending:
        stats.append(_embed(pending, embedders, sentence_only))
        writer.upsert(pending)
    report.embedding = [s.to_dict() for s in _total(stats)]
    report.removed = sorted(set(previous) - seen)
    writer.delete(report.removed)
    if previous and not (report.added or report.changed or report.removed) and not report.rebuilt:
        report.version = writer.current()
        return
    report.version = writer.publish()


def answer_units(text: str, chunk: Chunk, comment_chars: int) -> list[tuple[int, int]]:
    """The spans the answerer may quote from a chunk: its sentences, or the whole of a short thread
    reply, whose sentences lean on each other ("Just set `--sriov-net-support simple`. That's
    enhanced networking.": the second sentence alone says nothing). Lines a comment quotes with ``>``
    are someone else's words (often the claim it corrects) and are never quoted as its own."""
    spans = sentence_spans(text, chunk.start, chunk.end)
    if chunk.kind == "thread":
        spans = [(a, b) for a, b in spans if not _quoted_line(text, a)]
    if chunk.is_reply and len(spans) > 1 and spans[-1][1] - spans[0][0] <= comment_chars:
        if not any(_quoted_line(text, i) for i in range(spans[0][0], spans[-1][1]) if text[i] == ">"):
            return [(spans[0][0], spans[-1][1])]
    return spans


def _quoted_line(text: str, pos: int) -> bool:
    line = text.rfind("\n", 0, pos) + 1
    return text[line : pos + 1].lstrip().startswith(">")


def _unembedded(document: Document, chunks: list[Chunk], digest: str) -> DocumentRecord:
    comment_chars = INDEX.splitter.comment_unit_chars
    units = [
        (i, a, b) for i, c in enumerate(chunks) for a, b in answer_units(document.text, c, comment_chars)
    ]
    return DocumentRecord(document, chunks, digest, units)


def _embed(
    docs: Sequence[DocumentRecord], embedders: list[Embedder], sentence_only: frozenset[str]
) -> list[EmbedStats]:
    """Fill in the chunk and sentence vectors of ``docs``, every distinct text once per model."""
    chunk_texts = [[indexed_text(c) for c in d.chunks] for d in docs]
    unit_texts = [[d.document.text[a:b] for _, a, b in d.units] for d in docs]
    chunks, units, stats = embed_documents(chunk_texts, unit_texts, embedders, sentence_only)
    for doc, chunk_vectors, unit_vectors in zip(docs, chunks, units, strict=True):
        doc.vectors.update(chunk_vectors)
        doc.unit_vectors.update(unit_vectors)
    return stats


def _total(batches: list[list[EmbedStats]]) -> list[EmbedStats]:
    """Per model, the embedding work of every batch together."""
    if not batches:
        return []
    return [
        EmbedStats(
            parts[0].model_id,
            sum(p.chunks for p in parts),
            sum(p.chunk_seconds for p in parts),
            sum(p.sentences for p in parts),
            sum(p.sentence_seconds for p in parts),
            sum(p.reused for p in parts),
        )
        for parts in zip(*batches, strict=True)
    ]


def writer_lock(
    index_dir: Path, timeout: float = INGEST_LOCK_TIMEOUT, on_wait: Callable[[str], None] | None = None
) -> AbstractContextManager[None]:
    """The lock every writer of the index holds: ``index.lock`` beside ``index_dir`` (for any store)."""
    index_dir = Path(index_dir)
    index_dir.parent.mkdir(parents=True, exist_ok=True)
    lock = index_dir.parent / f"{index_dir.name}.lock"
    return exclusive_lock(lock, timeout, on_wait, what="the index writer lock")
