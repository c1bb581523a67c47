"""Walks a corpus folder, dispatches each file to the parser for its kind, and reports
unreadable input as problems: one bad file never stops the others."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ingest.article import parse_article
from ingest.errors import IngestError
from ingest.faq import parse_faq
from ingest.threads import parse_thread
from kb.types import Chunk, Document

MAX_BYTES = 20 * 1024 * 1024
Parser = Callable[[str, str], tuple[Document, list[Chunk]]]
PARSERS: dict[str, Parser] = {"article": parse_article, "faq": parse_faq, "thread": parse_thread}
_MARKDOWN = {".md", ".markdown"}


@dataclass(frozen=True)
class SourceFile:
    path: Path
    doc_id: str
    kind: str
    digest: str


@dataclass(frozen=True)
class Problem:
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass(frozen=True)
class Parsed:
    source: SourceFile
    document: Document
    chunks: list[Chunk]


@dataclass
class Corpus:
    parsed: list[Parsed] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def kind_for(rel: Path) -> str | None:
    top = rel.parts[0] if len(rel.parts) > 1 else ""
    suffix = rel.suffix.lower()
    if suffix == ".json":
        return "thread"
    if suffix in _MARKDOWN:
        return "faq" if top == "faq" else "article"
    return None


def discover(root: Path) -> tuple[list[SourceFile], list[Problem]]:
    """Every source file under ``root`` with its kind and content hash, plus files that cannot be used."""
    root = Path(root)
    if not root.is_dir():
        return [], [Problem(str(root), "corpus folder does not exist")]
    sources, problems = [], []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        kind = kind_for(rel)
        if kind is None:
            problems.append(Problem(rel.as_posix(), f"unsupported file type '{path.suffix or '(none)'}'"))
            continue
        try:
            data = path.read_bytes()
        except OSError as exc:
            problems.append(Problem(rel.as_posix(), f"cannot read: {exc.strerror}"))
            continue
        doc_id = rel.with_suffix("").as_posix()
        sources.append(SourceFile(path, doc_id, kind, hashlib.sha256(data).hexdigest()))
    return sources, problems


def parse_source(source: SourceFile) -> Parsed:
    """Parse one file; raises IngestError with a readable reason."""
    try:
        data = source.path.read_bytes()
    except OSError as exc:
        raise IngestError(f"cannot read: {exc.strerror}") from None
    if len(data) > MAX_BYTES:
        raise IngestError(f"file is {len(data) // 1_000_000} MB, over the {MAX_BYTES // 1_000_000} MB limit")
    if not data.strip():
        raise IngestError("empty file")
    try:
        raw = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise IngestError(f"not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None
    raw = raw.replace("\r\n", "\n").replace("\r", "\n")
    document, chunks = PARSERS[source.kind](source.doc_id, raw)
    return Parsed(source, document, chunks)


def load_corpus(root: Path) -> Corpus:
    sources, problems = discover(root)
    corpus = Corpus(problems=problems)
    for source in sources:
        try:
            corpus.parsed.append(parse_source(source))
        except IngestError as exc:
            corpus.problems.append(Problem(source.doc_id + source.path.suffix, str(exc)))
        except RecursionError:
            corpus.problems.append(Problem(source.doc_id + source.path.suffix, "nested too deeply to parse"))
    return corpus
