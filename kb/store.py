"""Reading the index folder: manifest, documents, chunks, sentence table, FAISS files, lexical index.

``index_dir`` is a symlink to one version folder under ``<index_dir>.versions/`` (kb/indexer.py writes
them). No pickle anywhere.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kb.dense import DenseIndex
from kb.embed import Embedder
from kb.lexical import Bm25Index
from kb.tuning import INDEX
from kb.types import Chunk, Document

FORMAT = 3  # 3: typed chunk provenance fields instead of a meta dict


class IndexUnavailable(RuntimeError):
    """The index is missing, corrupt or built differently; the message names the fix."""


@dataclass(frozen=True)
class Sentences:
    """Sentence spans of every chunk (document offsets) and their vectors per embedder."""

    chunk_row: np.ndarray
    start: np.ndarray
    end: np.ndarray
    vectors: dict[str, np.ndarray]


@dataclass(frozen=True)
class LoadedIndex:
    path: Path
    manifest: dict
    documents: dict[str, Document]
    chunks: list[Chunk]
    dense: dict[str, DenseIndex]
    lexical: Bm25Index
    sentences: Sentences

    @property
    def version(self) -> str:
        return str(self.manifest["version"])


def indexed_text(chunk: Chunk) -> str:
    """The text a chunk is embedded and lexically indexed under."""
    return (
        f"{chunk.context}\n{chunk.text}" if chunk.context and chunk.kind in ("faq", "article") else chunk.text
    )


def file_slug(model_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", model_id)[-80:]


def build_settings(embedders: list[Embedder], parser_version: str) -> dict:
    """What an index was built under; when any of it differs, the next ingest rebuilds everything.
    ``settings_hash`` covers kb.tuning.INDEX, the text rules' code and the parsers' version."""
    return {
        "format": FORMAT,
        "embedders": [{"id": e.model_id, "dim": e.dim} for e in embedders],
        "settings": INDEX.to_dict(),
        "settings_hash": INDEX.digest(parser_version),
    }


# ---------------------------------------------------------------- reading


def load_index(index_dir: Path, model_ids: list[str] | None = None) -> LoadedIndex:
    """Load the current version; raises IndexUnavailable with a one-line fix."""
    index_dir = Path(index_dir)
    manifest_path = index_dir / "manifest.json"
    if not manifest_path.exists():
        raise IndexUnavailable(f"no index at {index_dir}: run `kbq ingest` to build one from the corpus")
    path = index_dir.resolve()
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
        if manifest.get("format") != FORMAT:
            raise IndexUnavailable(
                f"index at {index_dir} has format {manifest.get('format')}, this kbq reads "
                f"format {FORMAT}: run `kbq ingest --rebuild`"
            )
        built = [e["id"] for e in manifest["embedders"]]
        if model_ids is not None and built != model_ids:
            raise IndexUnavailable(
                f"index at {index_dir} was built with {'+'.join(built)} but KB_EMBED_MODEL "
                f"asks for {'+'.join(model_ids)}: run `kbq ingest` to rebuild it"
            )
        documents = {d["doc_id"]: Document(**d) for d in _read_jsonl(path / "documents.jsonl")}
        chunks = [Chunk.from_dict(c) for c in _read_jsonl(path / "chunks.jsonl")]
        dense = {mid: DenseIndex.load(path / f"dense-{file_slug(mid)}.faiss") for mid in built}
        lexical = Bm25Index.load(path)
        sentences = _load_sentences(path, built)
        _check(manifest, documents, chunks, dense, lexical, sentences)
    except IndexUnavailable:
        raise
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise IndexUnavailable(
            f"index at {index_dir} is corrupt ({type(exc).__name__}: {str(exc)[:120]}): "
            "run `kbq ingest --rebuild`"
        ) from None
    return LoadedIndex(path, manifest, documents, chunks, dense, lexical, sentences)


def _check(
    manifest: dict,
    documents: dict[str, Document],
    chunks: list[Chunk],
    dense: dict[str, DenseIndex],
    lexical: Bm25Index,
    sentences: Sentences,
) -> None:
    if manifest["counts"]["chunks"] != len(chunks) or manifest["counts"]["documents"] != len(documents):
        raise ValueError("chunk or document count differs from the manifest")
    if any(d.size != len(chunks) for d in dense.values()) or lexical.size != len(chunks):
        raise ValueError("vector or lexical rows differ from the chunk count")
    if any(v.shape[0] != len(sentences.start) for v in sentences.vectors.values()):
        raise ValueError("sentence vectors differ from the sentence table")
    for chunk in chunks:
        doc = documents.get(chunk.doc_id)
        if doc is None or doc.text[chunk.start : chunk.end] != chunk.text:
            raise ValueError(f"chunk {chunk.chunk_id} does not match its document text")


def _read_jsonl(path: Path) -> Iterator[dict]:
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def _load_sentences(path: Path, model_ids: list[str]) -> Sentences:
    with np.load(path / "sentences.npz", allow_pickle=False) as z:
        rows, starts, ends = z["chunk_row"], z["start"], z["end"]
    vectors = {
        mid: np.load(path / f"sentences-{file_slug(mid)}.npy", allow_pickle=False) for mid in model_ids
    }
    return Sentences(rows, starts, ends, vectors)


def current_version(index_dir: Path) -> str | None:
    """The version id the index link points at, cheaply, without loading anything."""
    try:
        return json.loads((Path(index_dir) / "manifest.json").read_text(encoding="utf-8"))["version"]
    except (OSError, ValueError, KeyError):
        return None
