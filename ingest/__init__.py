"""Source parsing: one pure parser per kind, and a loader that reports bad input instead of crashing."""

from pathlib import Path

from ingest.loader import Corpus, Parsed, Problem, SourceFile, discover, load_corpus, parse_source
from kb.tuning import source_digest

# The parsers' version, derived from their code: a change to how sources become chunks rebuilds the index
# (kb.store.build_settings) instead of leaving stale chunks for documents whose files did not change.
PARSER_VERSION = source_digest(*Path(__file__).parent.glob("*.py"))

__all__ = [
    "PARSER_VERSION",
    "Corpus",
    "Parsed",
    "Problem",
    "SourceFile",
    "discover",
    "load_corpus",
    "parse_source",
]
