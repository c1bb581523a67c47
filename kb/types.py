"""Core value types shared by every layer. All frozen: build a new one instead of mutating."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

KINDS = ("article", "faq", "thread")
OFFICIAL_KINDS = ("article", "faq")


COMMENT_PREFIX = "t1_"  # a Reddit fullname's prefix for a comment (a post's is "t3_")


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
class Provenance:
    """Where a chunk's words come from, beyond its document: the FAQ entry's source line and entry key
    (shared by the entry's twin in the other language), or a thread comment's place in the conversation."""

    url: str | None = None  # the entry's source, or the comment's permalink
    author: str | None = None
    date: str | None = None
    source_line: str = ""  # an FAQ entry's "Source:" line
    entry_key: str = ""  # an FAQ entry's key, the same in both languages
    comment_id: str = ""  # a thread comment's id ("" for the post)
    parent_id: str = ""  # the fullname it replies to (COMMENT_PREFIX + id: a comment; "t3_…": the post)
    parent_author: str = ""
    score: int = 0
    depth: int = -1  # -1 for the post
    disputed_by: tuple[str, ...] = ()  # ids of later comments that correct or dispute this one
    corrects: tuple[str, ...] = ()  # ids of earlier comments whose claim this one corrects
    asks: bool = False  # the comment is a question, not an answer

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Provenance:
        return cls(
            **{
                **data,
                "disputed_by": tuple(data.get("disputed_by", ())),
                "corrects": tuple(data.get("corrects", ())),
            }
        )


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
    origin: Provenance = field(default_factory=Provenance, hash=False, compare=False)

    @property
    def is_reply(self) -> bool:
        """A thread comment, whose context is the comment or post it replies to."""
        return self.kind == "thread" and bool(self.origin.parent_id)

    @property
    def answers_comment(self) -> bool:
        """A thread comment replying to another comment (not to the post), whose context is that comment."""
        return self.is_reply and self.origin.parent_id.startswith(COMMENT_PREFIX)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Chunk:
        return cls(**{**data, "origin": Provenance.from_dict(data.get("origin") or {})})


def quotable(chunk: Chunk) -> bool:
    """A passage the answer may quote: official, or a comment that states something nobody corrected
    and does not only ask."""
    return chunk.kind in OFFICIAL_KINDS or not (chunk.origin.disputed_by or chunk.origin.asks)


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
    # "official" (FAQ, article), "community" (a thread comment) or "correction" (a comment that corrects
    # an earlier claim, which ``corrects`` names without quoting it: a corrected claim is never shown)
    label: str = "official"
    corrects: dict[str, str | None] | None = None

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
    lang: str = "en"  # the language the answer is written in

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
            lang=data.get("lang", "en"),
        )
