"""One immutable segment of the local store: a folder of chunks, documents, vectors and lexical postings.

A segment is written once (kb/segment_builder.py, streaming: documents arrive in batches and go to disk as
they come) and never changed; an upsert writes a new small segment and the version's catalog says which
segment holds each document's live copy (kb/local_store.py). Everything large is read from disk as
questions touch it:

- ``chunks.jsonl`` / ``documents.jsonl`` with byte offsets (``*-offsets.npy``): a chunk or document is one
  ``pread``, never the whole file in memory;
- ``dense-<model>.f32``: chunk vectors (rows × dim, float32), for exact cosines of candidate rows, of each
  model with chunk vectors (kb.store.chunk_models: not the relevance model);
  ``dense-<model>.ivf``: an IVF index over them (8-bit codes) when the segment has at least
  ``INDEX.store.exact_below`` rows;
- ``units-<model>.<dtype>``: answer-unit (sentence) vectors, read only for candidate rows;
- the BM25 postings (kb/lexical.py) memory-mapped, and ``stated.json``: what quotable chunks say.

A segment under ``INDEX.store.exact_below`` rows reads its vectors into memory once (an upsert's segment in
a large store is scanned whole by every question). A large one reads a question's rows with ``pread``
(kb/row_file.py), not through a memory map.
"""

from __future__ import annotations

import functools
import json
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from kb.dense import inner_products
from kb.lexical import Bm25Index
from kb.row_file import RowFile, float32
from kb.store import file_slug
from kb.tuning import INDEX, RETRIEVAL
from kb.types import Chunk, Document

LANG_CODES = ("en", "zh")


class _Lru:
    """A small thread-safe least-recently-used cache."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any, make: Any) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = make(key)
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value


class Segment:
    """A written segment, opened for reading."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
        self.id: str = self.meta["id"]
        self.rows: int = self.meta["rows"]
        self.units: int = self.meta["units"]
        self.dims: dict[str, int] = dict(self.meta["dims"])
        self.chunk_models: list[str] = list(self.meta["chunk_models"])  # the others: sentence vectors only
        self.avgdl: float = self.meta["avgdl"]
        self.docs: dict[str, list[int]] = json.loads((path / "documents.json").read_text(encoding="utf-8"))
        self.lang_codes = np.load(path / "langs.npy")
        self.kind_codes = np.load(path / "kinds.npy")
        self.unit_first = np.load(path / "unit-first.npy")
        self.unit_start = np.load(path / "unit-start.npy", mmap_mode="r")
        self.unit_end = np.load(path / "unit-end.npy", mmap_mode="r")
        self._chunk_at = np.load(path / "chunk-offsets.npy")
        self._doc_at = np.load(path / "document-offsets.npy")
        self._chunks_fd = os.open(path / "chunks.jsonl", os.O_RDONLY)
        self._docs_fd = os.open(path / "documents.jsonl", os.O_RDONLY)
        small = self.rows < INDEX.store.exact_below  # its vectors live in memory, read once
        self.dense = {
            m: self._matrix(f"dense-{file_slug(m)}.f32", np.float32, self.rows, self.dims[m], small)
            for m in self.chunk_models
        }
        dtype = np.dtype(self.meta["unit_dtype"])
        self.unit_vectors = {
            m: self._matrix(f"units-{file_slug(m)}.{dtype.name}", dtype, self.units, d, small)
            for m, d in self.dims.items()
        }
        self._small = small
        self._cache = _Lru(4096)

    @functools.cached_property
    def ivf(self) -> dict[str, faiss.Index]:
        """Each model's IVF index (a large segment only), loaded when a question first needs it."""
        out = {}
        for m in self.chunk_models:
            path = self.path / f"dense-{file_slug(m)}.ivf"
            if path.exists():
                out[m] = faiss.read_index(str(path))
                faiss.extract_index_ivf(out[m]).nprobe = RETRIEVAL.nprobe
        return out

    @functools.cached_property
    def lexical(self) -> Bm25Index:
        """The postings, loaded when first asked for (a writer that only replaces documents never is)."""
        return Bm25Index.load(self.path, mmap=not self._small)

    @functools.cached_property
    def stated(self) -> frozenset[str]:
        return frozenset(json.loads((self.path / "stated.json").read_text(encoding="utf-8")))

    def _matrix(self, name: str, dtype: Any, rows: int, dim: int, in_memory: bool) -> np.ndarray | RowFile:
        """float32 in memory (a small segment's), or rows read as questions ask for them."""
        if rows == 0:
            return np.zeros((0, dim), np.float32)
        if in_memory:
            return float32(np.fromfile(self.path / name, dtype=dtype).reshape(rows, dim))
        return RowFile(self.path / name, dtype, rows, dim)

    def close(self) -> None:
        for fd in (self._chunks_fd, self._docs_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        self._chunks_fd = self._docs_fd = -1
        # getattr: __del__ runs this after an __init__ that failed part-way
        for matrix in (*getattr(self, "dense", {}).values(), *getattr(self, "unit_vectors", {}).values()):
            if isinstance(matrix, RowFile):
                matrix.close()

    def __del__(self) -> None:
        if getattr(self, "_docs_fd", -1) >= 0:
            self.close()

    # ------------------------------------------------------------ records

    def chunk(self, row: int) -> Chunk:
        return self._cache.get(
            ("c", row), lambda key: Chunk.from_dict(self._line(self._chunks_fd, self._chunk_at, key[1]))
        )

    def document(self, doc_id: str) -> Document:
        line = self.docs[doc_id][2]
        return self._cache.get(
            ("d", line), lambda key: Document(**self._line(self._docs_fd, self._doc_at, key[1]))
        )

    def document_range(self, doc_id: str) -> tuple[int, int]:
        first, count, _ = self.docs[doc_id]
        return first, first + count

    @staticmethod
    def _line(fd: int, offsets: np.ndarray, i: int) -> dict:
        start, end = int(offsets[i]), int(offsets[i + 1])
        return json.loads(os.pread(fd, end - start, start).decode("utf-8"))

    # ------------------------------------------------------------ dense

    def dense_search(
        self, model_id: str, vector: np.ndarray, k: int, live: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(local rows, exact cosines) of about the k best live rows."""
        ivf = self.ivf.get(model_id)
        if ivf is None:
            rows = np.flatnonzero(live)
            return _top(rows, self.dense_scores(model_id, vector, rows), k)
        dead = self.rows - int(live.sum())
        want = min(self.rows, k + min(dead, k))
        _, ids = ivf.search(np.ascontiguousarray(vector, dtype=np.float32).reshape(1, -1), want)
        rows = np.unique(ids[0][ids[0] >= 0])
        rows = rows[live[rows]]
        return _top(rows, self.dense_scores(model_id, vector, rows), k)

    def dense_scores(self, model_id: str, vector: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return inner_products(self.chunk_vectors(model_id, rows), vector)

    def chunk_vectors(self, model_id: str, rows: np.ndarray) -> np.ndarray:
        return _take(self.dense[model_id], rows)

    def sentence_vectors(self, model_id: str, units: np.ndarray) -> np.ndarray:
        return _take(self.unit_vectors[model_id], units)

    # ------------------------------------------------------------ units

    def unit_index(self, rows: np.ndarray) -> np.ndarray:
        """Local unit ids of ``rows`` (ascending), in row order."""
        first, last = self.unit_first[rows], self.unit_first[rows + 1]
        counts = last - first
        if not counts.sum():
            return np.zeros(0, np.int64)
        return np.repeat(first - np.cumsum(counts) + counts, counts) + np.arange(int(counts.sum()))

    def unit_rows(self, units: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.unit_first, units, side="right") - 1


def _take(matrix: np.ndarray | RowFile, rows: np.ndarray) -> np.ndarray:
    """``matrix[rows]`` as float32; a matrix in memory whole when every row is asked for in order."""
    if (
        isinstance(matrix, np.ndarray)
        and len(rows) == len(matrix)
        and np.array_equal(rows, np.arange(len(rows)))
    ):
        return matrix
    return matrix[rows]


def _top(rows: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    if len(rows) > k:
        keep = np.argpartition(-scores, k - 1)[:k]
        rows, scores = rows[keep], scores[keep]
    order = np.argsort(rows)
    return rows[order], scores[order].astype(np.float32)
