"""The golden question set: loading, and mapping its passage references onto index chunks.

Every item belongs to one split: ``tune`` (every fitted model, feature, weight, threshold and constant is
chosen on it) or ``test`` (frozen, read only to report)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from kb.store import Store, iter_chunks
from kb.types import Chunk, Document

# One file per round of writing (``round01-02.jsonl``, ``round03.jsonl``, …), read in name order: a new round is
# a new file, and no file grows past what a repository should hold.
GOLDEN = Path(__file__).with_name("golden")
SPLITS = ("tune", "test")


@dataclass(frozen=True)
class Item:
    id: str
    lang: str
    question: str
    answerable: bool
    relevant: tuple[tuple[str, str], ...]  # (doc_id, exact substring of the answering passage)
    must_contain: tuple[tuple[str, ...], ...]
    tags: tuple[str, ...]
    split: str = "tune"
    forbidden: tuple[str, ...] = ()  # a corrected claim's words, which must never be in the answer text


def golden_files(path: Path = GOLDEN) -> list[Path]:
    """The question files of ``path``: its ``*.jsonl`` in name order when it is a directory, else itself."""
    return sorted(path.glob("*.jsonl")) if path.is_dir() else [path]


def load_golden(path: Path = GOLDEN, split: str | None = None) -> list[Item]:
    """The items of ``path`` (a file, or a directory of them: ``golden_files``), or only those of one split."""
    items = []
    lines = [line for f in golden_files(path) for line in f.read_text(encoding="utf-8").splitlines()]
    for line in lines:
        if not line.strip():
            continue
        d = json.loads(line)
        items.append(
            Item(
                d["id"],
                d["lang"],
                d["question"],
                bool(d["answerable"]),
                tuple((r["doc_id"], r["contains"]) for r in d.get("relevant", [])),
                tuple(tuple(g) for g in d.get("must_contain", [])),
                tuple(d.get("tags", [])),
                d.get("split", "tune"),
                tuple(d.get("forbidden", [])),
            )
        )
    unknown = {i.split for i in items} - set(SPLITS)
    if unknown:
        raise ValueError(f"{path}: unknown split {sorted(unknown)}; use one of {SPLITS}")
    return [i for i in items if split is None or i.split == split]


@dataclass(frozen=True)
class Snapshot:
    """The whole of a small store in memory, for judging answers: documents by id, chunks by row."""

    documents: dict[str, Document]
    rows: dict[int, Chunk]

    @property
    def chunks(self) -> list[Chunk]:
        return list(self.rows.values())

    @classmethod
    def of(cls, store: Store) -> Snapshot:
        rows = dict(iter_chunks(store))
        documents = {d: doc for d in store.document_ids() if (doc := store.document(d)) is not None}
        return cls(documents, rows)


def passage_chunks(
    documents: dict[str, Document], chunks: list[Chunk], doc_id: str, contains: str
) -> list[Chunk] | None:
    """The chunks whose span overlaps one referenced passage (none: it lies only in unquoted text, such as
    an FAQ entry's sources line); None when the passage is not verbatim in its document."""
    doc = documents.get(doc_id)
    at = doc.text.find(contains) if doc else -1
    if at < 0:
        return None
    end = at + len(contains)
    return [c for c in chunks if c.doc_id == doc_id and c.start < end and at < c.end]


def relevant_chunks(item: Item, documents: dict[str, Document], chunks: list[Chunk]) -> set[str]:
    """Chunk ids whose span overlaps a referenced passage (so chunking changes keep the labels), and the
    chunks of those FAQ entries' twins."""
    named = []
    for doc_id, contains in item.relevant:
        found = passage_chunks(documents, chunks, doc_id, contains)
        if found is None:
            raise ValueError(f"{item.id}: passage {contains!r} not found in {doc_id}")
        named.extend(found)
    # an FAQ entry's twin in the other language says the same, so it is as relevant
    twins = {(c.doc_id.rsplit(".", 1)[0], c.origin.entry_key) for c in named if c.origin.entry_key}
    return {c.chunk_id for c in named} | {
        c.chunk_id
        for c in chunks
        if c.origin.entry_key and (c.doc_id.rsplit(".", 1)[0], c.origin.entry_key) in twins
    }
