"""Walks a corpus folder, dispatches each file to the parser for its kind, and reports
unreadable input as problems: one bad file never stops the others. Only regular files inside the folder
are read (ingest/files.py); doc ids are safe URL path segments (ingest/ids.py)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ingest.article import parse_article
from ingest.errors import IngestError
from ingest.faq import parse_faq
from ingest.files import Unreadable, read_inside, walk
from ingest.ids import doc_id_for
from ingest.threads import parse_thread
from kb.types import Chunk, Document

Parser = Callable[[str, str], tuple[Document, list[Chunk]]]
PARSERS: dict[str, Parser] = {"article": parse_article, "faq": parse_faq, "thread": parse_thread}
_MARKDOWN = {".md", ".markdown"}


@dataclass(frozen=True)
class SourceFile:
    path: Path
    doc_id: str
    kind: str
    digest: str
    root: Path  # the corpus folder: the file is read only while it resolves inside it


@dataclass(frozen=True)
class Problem:
    path: str
    reason: str

    def __str__(self) -> str:
        # a file name may hold a newline or a terminal escape: shown escaped, on one line
        shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in self.path)
        return f"{shown}: {self.reason}"


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
    for path, skipped in walk(root):
        rel = path.relative_to(root)
        if skipped:
            problems.append(Problem(rel.as_posix(), skipped))
            continue
        kind = kind_for(rel)
        if kind is None:
            problems.append(Problem(rel.as_posix(), f"unsupported file type '{path.suffix or '(none)'}'"))
            continue
        try:
            data = read_inside(path, root)
        except Unreadable as exc:
            problems.append(Problem(rel.as_posix(), str(exc)))
            continue
        sources.append(SourceFile(path, doc_id_for(rel), kind, hashlib.sha256(data).hexdigest(), root))
    return sources, problems


def parse_source(source: SourceFile) -> Parsed:
    """Parse one file; raises IngestError with a readable reason."""
    try:
        data = read_inside(source.path, source.root)
    except Unreadable as exc:
        raise IngestError(str(exc)) from None
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
            corpus.problems.append(Problem(_shown(source), str(exc)))
        except RecursionError:
            corpus.problems.append(Problem(_shown(source), "nested too deeply to parse"))
    return corpus


def _shown(source: SourceFile) -> str:
    return source.path.relative_to(source.root).as_posix()
