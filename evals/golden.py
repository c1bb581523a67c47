"""The golden question set: loading, and mapping its passage references onto index chunks."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from kb.types import Chunk, Document

GOLDEN = Path(__file__).with_name("golden.jsonl")


@dataclass(frozen=True)
class Item:
    id: str
    lang: str
    question: str
    answerable: bool
    relevant: tuple[tuple[str, str], ...]  # (doc_id, exact substring of the answering passage)
    must_contain: tuple[tuple[str, ...], ...]
    tags: tuple[str, ...]


def load_golden(path: Path = GOLDEN) -> list[Item]:
    items = []
    for line in path.read_text(encoding="utf-8").splitlines():
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
            )
        )
    return items


def relevant_chunks(item: Item, documents: dict[str, Document], chunks: list[Chunk]) -> set[str]:
    """Chunk ids whose span overlaps a referenced passage, so chunking changes keep the labels."""
    spans: dict[str, list[tuple[int, int]]] = {}
    for doc_id, contains in item.relevant:
        doc = documents.get(doc_id)
        at = doc.text.find(contains) if doc else -1
        if at < 0:
            raise ValueError(f"{item.id}: passage {contains!r} not found in {doc_id}")
        spans.setdefault(doc_id, []).append((at, at + len(contains)))
    return {c.chunk_id for c in chunks for a, b in spans.get(c.doc_id, []) if c.start < b and a < c.end}
