"""Writing the index folder, incrementally.

A new version is written beside the old one and the ``index_dir`` link is swapped with an atomic
rename, so a reader never sees a half-written index and a crash mid-ingest leaves the old one
serving. Only added or changed documents are parsed and embedded; an embedder, splitter or format
change rebuilds everything.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import shutil
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kb.batch_embed import EmbedStats, embed_documents
from kb.config import INGEST_LOCK_TIMEOUT
from kb.dense import DenseIndex
from kb.embed import Embedder
from kb.fsutil import exclusive_lock, install_link
from kb.lexical import Bm25Index
from kb.store import (
    IndexUnavailable,
    LoadedIndex,
    build_settings,
    current_version,
    file_slug,
    indexed_text,
    load_index,
)
from kb.text import sentence_spans
from kb.tuning import INDEX
from kb.types import Chunk, Document

KEEP_VERSIONS = 3
TMP_PREFIX = ".tmp-"  # a version being written; one left behind by a crash is removed by the next writer


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


@dataclass
class _Doc:
    document: Document
    chunks: list[Chunk]
    vectors: dict[str, np.ndarray]  # chunk vectors per model
    sentence_spans: list[tuple[int, int, int]]  # (chunk offset within doc, start, end)
    sentence_vectors: dict[str, np.ndarray]
    digest: str


def update_index(
    index_dir: Path,
    sources: list[SourceRecord],
    embedders: list[Embedder],
    parser_version: str = "",
    rebuild: bool = False,
    progress: Callable[[int, int], None] | None = None,
    lock_timeout: float = INGEST_LOCK_TIMEOUT,
    on_wait: Callable[[str], None] | None = None,
) -> UpdateReport:
    """Bring the index in line with ``sources``: embed only added or changed documents, drop
    removed ones, keep the old version of a document whose source fails to load.

    One writer at a time: another ingest waits up to ``lock_timeout`` seconds (``on_wait`` is told who it
    waits for), then raises ``kb.fsutil.LockTimeout``."""
    index_dir = Path(index_dir)
    report = UpdateReport()
    with writer_lock(index_dir, lock_timeout, on_wait):
        _remove_leftovers(index_dir)
        settings = build_settings(embedders, parser_version)
        previous = _previous(index_dir, settings, rebuild, report)
        docs: list[_Doc] = []
        pending: list[_Doc] = []  # added or changed: embedded together below
        for i, source in enumerate(sources):
            old = previous.get(source.doc_id)
            if old is not None and old.digest == source.digest:
                docs.append(old)
                report.unchanged.append(source.doc_id)
            else:
                try:
                    document, chunks = source.load()
                except Exception as exc:  # a bad source must never stop the others
                    report.failed.append((source.doc_id, str(exc)))
                    if old is not None:
                        docs.append(old)
                    continue
                docs.append(_unembedded(document, chunks, source.digest))
                pending.append(docs[-1])
                report.embedded_chunks += len(chunks)
                (report.changed if old is not None else report.added).append(source.doc_id)
            if progress:
                progress(i + 1, len(sources))
        report.embedding = [stats.to_dict() for stats in _embed(pending, embedders)]
        kept = {d.document.doc_id for d in docs}
        report.removed = sorted(set(previous) - kept)
        if previous and not (report.added or report.changed or report.removed) and not report.rebuilt:
            report.version = current_version(index_dir) or ""
            return report
        report.version = _write(index_dir, docs, embedders, settings)
    return report


def _previous(index_dir: Path, expected: dict, rebuild: bool, report: UpdateReport) -> dict[str, _Doc]:
    if not (index_dir / "manifest.json").exists():
        return {}
    if rebuild:
        report.rebuilt = "rebuild requested"
        return {}
    try:
        loaded = load_index(index_dir)
    except IndexUnavailable as exc:
        report.rebuilt = f"previous index unreadable ({exc})"
        return {}
    for key, value in expected.items():
        if loaded.manifest.get(key) != value:
            report.rebuilt = f"{key} changed"
            return {}
    return _split_by_document(loaded)


def _split_by_document(loaded: LoadedIndex) -> dict[str, _Doc]:
    rows_by_doc: dict[str, list[int]] = {}
    for row, chunk in enumerate(loaded.chunks):
        rows_by_doc.setdefault(chunk.doc_id, []).append(row)
    vectors = {mid: d.vectors() for mid, d in loaded.dense.items()}
    s = loaded.sentences
    out = {}
    for doc_id, document in loaded.documents.items():
        rows = rows_by_doc.get(doc_id, [])
        first = rows[0] if rows else 0
        mask = np.isin(s.chunk_row, rows)
        spans = [
            (int(r) - first, int(a), int(b))
            for r, a, b in zip(s.chunk_row[mask], s.start[mask], s.end[mask], strict=True)
        ]
        out[doc_id] = _Doc(
            document,
            [loaded.chunks[r] for r in rows],
            {m: v[rows] for m, v in vectors.items()},
            spans,
            {m: v[mask] for m, v in s.vectors.items()},
            loaded.manifest["documents"][doc_id]["hash"],
        )
    return out


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


def _unembedded(document: Document, chunks: list[Chunk], digest: str) -> _Doc:
    comment_chars = INDEX.splitter.comment_unit_chars
    spans = [
        (i, a, b) for i, c in enumerate(chunks) for a, b in answer_units(document.text, c, comment_chars)
    ]
    return _Doc(document, chunks, {}, spans, {}, digest)


def _embed(docs: list[_Doc], embedders: list[Embedder]) -> list[EmbedStats]:
    """Fill in the chunk and sentence vectors of ``docs``, every distinct text once per model."""
    if not docs:
        return []
    chunk_texts = [[indexed_text(c) for c in d.chunks] for d in docs]
    sentence_texts = [[d.document.text[a:b] for _, a, b in d.sentence_spans] for d in docs]
    chunks, sentences, stats = embed_documents(chunk_texts, sentence_texts, embedders)
    for doc, chunk_vectors, sentence_vectors in zip(docs, chunks, sentences, strict=True):
        doc.vectors.update(chunk_vectors)
        doc.sentence_vectors.update(sentence_vectors)
    return stats


def _write(index_dir: Path, docs: list[_Doc], embedders: list[Embedder], settings: dict) -> str:
    docs = sorted(docs, key=lambda d: d.document.doc_id)
    version = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)
    versions = _versions_dir(index_dir)
    versions.mkdir(parents=True, exist_ok=True)
    tmp = versions / f"{TMP_PREFIX}{version}"
    tmp.mkdir()
    chunks = [c for d in docs for c in d.chunks]
    with (tmp / "documents.jsonl").open("w", encoding="utf-8") as fh:
        for d in docs:
            fh.write(json.dumps(d.document.to_dict(), ensure_ascii=False) + "\n")
    with (tmp / "chunks.jsonl").open("w", encoding="utf-8") as fh:
        for c in chunks:
            fh.write(json.dumps(c.to_dict(), ensure_ascii=False) + "\n")
    rows, starts, ends, offset = [], [], [], 0
    for d in docs:
        for i, a, b in d.sentence_spans:
            rows.append(offset + i)
            starts.append(a)
            ends.append(b)
        offset += len(d.chunks)
    np.savez(
        tmp / "sentences.npz",
        chunk_row=np.array(rows, np.int32),
        start=np.array(starts, np.int32),
        end=np.array(ends, np.int32),
    )
    for e in embedders:
        mid = e.model_id
        chunk_vectors = np.vstack([d.vectors[mid] for d in docs] or [np.zeros((0, e.dim), np.float32)])
        DenseIndex.build(chunk_vectors.reshape(-1, e.dim)).save(tmp / f"dense-{file_slug(mid)}.faiss")
        sent = np.vstack([d.sentence_vectors[mid] for d in docs] or [np.zeros((0, e.dim), np.float32)])
        np.save(tmp / f"sentences-{file_slug(mid)}.npy", sent.reshape(-1, e.dim).astype(np.float32))
    Bm25Index.build(
        [indexed_text(c) for c in chunks],
        cjk=INDEX.lexical.cjk,
        k1=INDEX.lexical.k1,
        b=INDEX.lexical.b,
    ).save(tmp)
    manifest = {
        **settings,
        "version": version,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "documents": {
            d.document.doc_id: {"hash": d.digest, "kind": d.document.kind, "chunks": len(d.chunks)}
            for d in docs
        },
        "counts": {"documents": len(docs), "chunks": len(chunks), "sentences": len(starts)},
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
    final = versions / version
    tmp.rename(final)
    # a plain folder from elsewhere in the way is set aside among the versions
    install_link(index_dir, final, set_aside=versions / f"adopted-{secrets.token_hex(3)}")
    _prune(versions, keep=final)
    return version


def _versions_dir(index_dir: Path) -> Path:
    return index_dir.parent / f"{index_dir.name}.versions"


def _prune(versions: Path, keep: Path) -> None:
    """Keep the newest few versions so readers that loaded an older one can finish."""
    old = sorted(
        (p for p in versions.iterdir() if p.is_dir() and not p.name.startswith(".") and p != keep),
        key=lambda p: p.stat().st_mtime,
    )
    for path in old[: max(0, len(old) - (KEEP_VERSIONS - 1))]:
        shutil.rmtree(path, ignore_errors=True)


def _remove_leftovers(index_dir: Path) -> None:
    """What a crashed writer left: half-written versions and the link it had not yet swapped in. Called
    under the writer lock, so nothing here belongs to a live writer."""
    for tmp in _versions_dir(index_dir).glob(f"{TMP_PREFIX}*"):
        shutil.rmtree(tmp, ignore_errors=True)
    for link in index_dir.parent.glob(f".{index_dir.name}.link-*"):
        if link.is_symlink():
            link.unlink(missing_ok=True)


def writer_lock(
    index_dir: Path, timeout: float = INGEST_LOCK_TIMEOUT, on_wait: Callable[[str], None] | None = None
) -> AbstractContextManager[None]:
    """The lock every writer of ``index_dir`` holds: ``index.lock`` beside it."""
    lock = index_dir.parent / f"{index_dir.name}.lock"
    return exclusive_lock(lock, timeout, on_wait, what="the index writer lock")
