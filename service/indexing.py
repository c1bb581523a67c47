"""Connects ingest's parsers to kb's incremental indexer: the one place both meet."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ingest import PARSER_VERSION, Problem, SourceFile, discover, parse_source
from kb.config import Settings
from kb.indexer import SourceRecord, UpdateReport
from kb.knowledge import build_index
from kb.types import Chunk, Document


def _loader(source: SourceFile) -> Callable[[], tuple[Document, list[Chunk]]]:
    def load() -> tuple[Document, list[Chunk]]:
        parsed = parse_source(source)
        return parsed.document, parsed.chunks

    return load


def ingest(
    settings: Settings,
    corpus: Path | None = None,
    rebuild: bool = False,
    progress: Callable[[int, int], None] | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> tuple[UpdateReport, list[Problem]]:
    """Bring the index in line with the corpus folder; returns the report and skipped files. ``on_wait``
    hears who holds the index while another ingest runs; ``kb.fsutil.LockTimeout`` if it runs too long."""
    sources, problems = discover(Path(corpus or settings.corpus_dir))
    if not sources and problems:
        return UpdateReport(), problems
    records = [SourceRecord(s.doc_id, s.digest, _loader(s)) for s in sources]
    report = build_index(settings, records, PARSER_VERSION, rebuild, progress, on_wait)
    problems += [Problem(doc_id, reason) for doc_id, reason in report.failed]
    return report, problems
