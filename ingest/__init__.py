"""Source parsing: one pure parser per kind, and a loader that reports bad input instead of crashing."""

from ingest.loader import Corpus, Parsed, Problem, SourceFile, discover, load_corpus, parse_source

__all__ = ["Corpus", "Parsed", "Problem", "SourceFile", "discover", "load_corpus", "parse_source"]
