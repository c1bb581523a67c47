"""Core value types shared by every layer. All frozen: build a new one instead of mutating."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

KINDS = ("article", "faq", "thread")
OFFICIAL_KINDS = ("article", "faq")


@dataclass(frozen=True)
class Document:
    """One source file turned into canonical text plus metadata."""

    doc_id: str
    kind: str
    title: str
    lang: str
    text: str
    url: str | None = None
    author: str | None = None
    date: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Chunk:
    """A span of a document's canonical text: ``document.text[start:end] == text``.

    ``section`` is the heading path (article), the question (FAQ) or the thread title;
    ``context`` is text that helps retrieval without being part of the span (the FAQ
    question for a split answer, the parent comment for a thread reply).
    """

    chunk_id: str
    doc_id: str
    kind: str
    text: str
    start: int
    end: int
    lang: str
    section: str = ""
    context: str = ""
    meta: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def is_reply(self) -> bool:
        """A thread comment, whose context is the comment or post it replies to."""
        return self.kind == "thread" and bool((self.meta or {}).get("parent_id"))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Chunk:
        return cls(**data)


def chunk_id_for(doc_id: str, text: str, occurrence: int = 0) -> str:
    """Content-derived id; ``occurrence`` separates identical texts within one document."""
    raw = f"{doc_id}\x00{text}\x00{occurrence}".encode()
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True)
class Hit:
    """A retrieved chunk with its scores; every score is higher-is-better."""

    chunk: Chunk
    score: float
    dense: float = 0.0
    lexical: float = 0.0
    rank: int = 0
    row: int = -1
    explain: dict[str, float] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class Citation:
    n: int
    chunk_id: str
    doc_id: str
    source: str
    title: str
    section: str
    url: str | None
    author: str | None
    date: str | None
    lang: str
    quote: str
    start: int
    end: int
    score: float
    community: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Answer:
    id: str
    question: str
    answer: str
    abstained: bool
    confidence: float
    citations: tuple[Citation, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["citations"] = [c.to_dict() for c in self.citations]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Answer:
        citations = tuple(Citation(**c) for c in data.get("citations", []))
        return cls(
            id=data["id"],
            question=data["question"],
            answer=data["answer"],
            abstained=data["abstained"],
            confidence=data["confidence"],
            citations=citations,
        )
