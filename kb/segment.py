"""One immutable segment of the local store: a folder of chunks, documents, vectors and lexical postings.

A segment is written once (``SegmentBuilder``, streaming: documents arrive in batches and go to disk as
they come) and never changed; an upsert writes a new small segment and the version's catalog says which
segment holds each document's live copy (kb/local_store.py). Everything large is read from disk as
questions touch it:

- ``chunks.jsonl`` / ``documents.jsonl`` with byte offsets (``*-offsets.npy``): a chunk or document is one
  ``pread``, never the whole file in memory;
- ``dense-<model>.f32``: chunk vectors (rows × dim, float32), for exact cosines of candidate rows;
  ``dense-<model>.ivf``: an IVF index over them (8-bit codes) when the segment has at least
  ``INDEX.store.exact_below`` rows;
- ``units-<model>.<dtype>``: answer-unit (sentence) vectors, read only for candidate rows;
- the BM25 postings (kb/lexical.py) memory-mapped, and ``stated.json``: what quotable chunks say.

A segment under ``INDEX.store.exact_below`` rows reads its vectors into memory once (an upsert's segment in
a large store is scanned whole by every question). A large one reads a question's rows with ``pread``
(``RowFile``), not through a memory map: mapped pages count in the process's RSS as questions touch them
(6.5 GB of a million-chunk store's after 210 questions, with ``MADV_RANDOM`` or without), while read pages
stay in the kernel's page cache, shared and dropped under pressure, at the same cost per question.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import threading
from array import array
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from kb.dense import inner_products
from kb.lexical import Bm25Index, term_counts
from kb.store import DocumentRecord, file_slug, indexed_text
from kb.text import tokenize
from kb.tuning import INDEX, RETRIEVAL, StoreSettings
from kb.types import KINDS, Chunk, Document, quotable

LANG_CODES = ("en", "zh")
IVF_TRAIN_PER_LIST = 40  # k-means points per IVF list, within FAISS's advice (39-256)


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
            m: self._matrix(f"dense-{file_slug(m)}.f32", np.float32, self.rows, d, small)
            for m, d in self.dims.items()
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
        for m in self.dims:
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


class RowFile:
    """A (rows × dim) matrix in a file, read a few rows at a time as float32: each run of consecutive rows
    asked for is one ``preadv`` (a chunk's sentences are one run)."""

    def __init__(self, path: Path, dtype: Any, rows: int, dim: int) -> None:
        self.dtype = np.dtype(dtype)
        self.shape = (rows, dim)
        self.row_bytes = self.dtype.itemsize * dim
        size = os.path.getsize(path)
        if size != rows * self.row_bytes:
            raise ValueError(f"{path.name} holds {size} bytes, not {rows} rows of {self.row_bytes}")
        self._fd = os.open(path, os.O_RDONLY)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        """The rows at integer positions ``rows`` (any order, repeats allowed), as float32."""
        rows = np.asarray(rows)
        if rows.ndim != 1 or (rows.size and rows.dtype.kind not in "iu"):
            raise TypeError("a RowFile is indexed by a 1-d array of row numbers")
        rows = rows.astype(np.int64, copy=False)
        out = np.empty((len(rows), self.shape[1]), self.dtype)
        if not len(rows):
            return out.astype(np.float32)
        if rows.min() < 0 or rows.max() >= self.shape[0]:
            raise IndexError(f"row out of range 0..{self.shape[0] - 1}")
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        starts = np.concatenate(([0], breaks)).tolist()
        ends = np.concatenate((breaks, [len(rows)])).tolist()
        buffer, size = memoryview(out).cast("B"), self.row_bytes  # type: ignore[arg-type]
        fd = self._fd
        for start, end, row in zip(starts, ends, rows[starts].tolist(), strict=True):
            into = buffer[start * size : end * size]
            if os.preadv(fd, [into], row * size) != len(into):  # a question reads ~2,000 runs: no call more
                self._read(into, row * size)
        return float32(out)

    def _read(self, into: memoryview, offset: int) -> None:
        """Fill ``into`` from ``offset``: a read returns at most ~2 GiB, or less near the end of a file."""
        while len(into):
            got = os.preadv(self._fd, [into], offset)
            if got <= 0:
                raise OSError(f"{len(into)} bytes missing at offset {offset}")
            into, offset = into[got:], offset + got

    def close(self) -> None:
        if getattr(self, "_fd", -1) >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        self.close()


def _take(matrix: np.ndarray | RowFile, rows: np.ndarray) -> np.ndarray:
    """``matrix[rows]`` as float32; a matrix in memory whole when every row is asked for in order."""
    if (
        isinstance(matrix, np.ndarray)
        and len(rows) == len(matrix)
        and np.array_equal(rows, np.arange(len(rows)))
    ):
        return matrix
    return matrix[rows]


def float32(vectors: np.ndarray) -> np.ndarray:
    """Vectors as float32; float16 through FAISS's decoder (3x numpy's astype, to the same bits)."""
    if vectors.dtype == np.float16 and len(vectors):
        codes = np.ascontiguousarray(vectors).view(np.uint8).reshape(len(vectors), -1)
        return faiss.ScalarQuantizer(vectors.shape[1], faiss.ScalarQuantizer.QT_fp16).decode(codes)
    return np.asarray(vectors, dtype=np.float32)


def _top(rows: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    if len(rows) > k:
        keep = np.argpartition(-scores, k - 1)[:k]
        rows, scores = rows[keep], scores[keep]
    order = np.argsort(rows)
    return rows[order], scores[order].astype(np.float32)


class SegmentBuilder:
    """Writes one segment from documents that arrive in batches; ``finish`` adds the postings and, for a
    large segment, the IVF indexes. Memory grows only with the postings' (row, term, count) triples."""

    def __init__(
        self,
        path: Path,
        segment_id: str,
        dims: Mapping[str, int],
        avgdl: float | None = None,
        settings: StoreSettings | None = None,
    ) -> None:
        self.path = path
        self.id = segment_id
        self.dims = dict(dims)
        self.avgdl = avgdl  # None: this segment's own mean chunk length (a full build)
        self.settings = settings or INDEX.store
        self.unit_dtype = np.dtype(self.settings.sentence_dtype)
        path.mkdir(parents=True)
        self._chunks = (path / "chunks.jsonl").open("wb")
        self._docs = (path / "documents.jsonl").open("wb")
        self._dense = {m: (path / f"dense-{file_slug(m)}.f32").open("wb") for m in self.dims}
        self._units = {
            m: (path / f"units-{file_slug(m)}.{self.unit_dtype.name}").open("wb") for m in self.dims
        }
        self.rows = 0
        self.n_units = 0
        self.docs: dict[str, list[int]] = {}
        self._chunk_at = array("q", [0])
        self._doc_at = array("q", [0])
        self._langs = array("B")
        self._kinds = array("B")
        self._unit_first = array("q", [0])
        self._unit_start = array("i")
        self._unit_end = array("i")
        self._lengths = array("f")
        self._post_row = array("i")
        self._post_term = array("i")
        self._post_tf = array("f")
        self._vocab: dict[str, int] = {}
        self._stated: set[str] = set()

    def add(self, records: Iterable[DocumentRecord]) -> None:
        for record in records:
            self._add(record)

    def _add(self, record: DocumentRecord) -> None:
        doc = record.document
        line = json.dumps(doc.to_dict(), ensure_ascii=False).encode("utf-8") + b"\n"
        self._docs.write(line)
        self._doc_at.append(self._doc_at[-1] + len(line))
        self.docs[doc.doc_id] = [self.rows, len(record.chunks), len(self._doc_at) - 2]
        for m in self.dims:
            _write(self._dense[m], record.vectors[m], np.float32, (len(record.chunks), self.dims[m]))
            _write(self._units[m], record.unit_vectors[m], self.unit_dtype, (len(record.units), self.dims[m]))
        units_of: list[list[tuple[int, int]]] = [[] for _ in record.chunks]
        for i, start, end in record.units:
            units_of[i].append((start, end))
        for chunk, units in zip(record.chunks, units_of, strict=True):
            line = json.dumps(chunk.to_dict(), ensure_ascii=False).encode("utf-8") + b"\n"
            self._chunks.write(line)
            self._chunk_at.append(self._chunk_at[-1] + len(line))
            self._langs.append(LANG_CODES.index(chunk.lang) if chunk.lang in LANG_CODES else 0)
            self._kinds.append(KINDS.index(chunk.kind))
            for start, end in units:
                self._unit_start.append(start)
                self._unit_end.append(end)
            self.n_units += len(units)
            self._unit_first.append(self.n_units)
            counts = term_counts(indexed_text(chunk))
            self._lengths.append(float(sum(counts.values())))
            for term, tf in counts.items():
                self._post_row.append(self.rows)
                self._post_term.append(self._vocab.setdefault(term, len(self._vocab)))
                self._post_tf.append(tf)
            if quotable(chunk):
                self._stated.update(tokenize(f"{chunk.context} {chunk.text}"))
            self.rows += 1

    def chunks_of(self, doc_id: str) -> list[Chunk]:
        """The chunks already written for ``doc_id`` (an upsert that replaces it within one ingest)."""
        self._chunks.flush()
        first, count, _ = self.docs[doc_id]
        with (self.path / "chunks.jsonl").open("rb") as fh:
            out = []
            for row in range(first, first + count):
                fh.seek(self._chunk_at[row])
                out.append(
                    Chunk.from_dict(json.loads(fh.read(self._chunk_at[row + 1] - self._chunk_at[row])))
                )
        return out

    def abandon(self) -> None:
        """Drop an unfinished segment."""
        for fh in (self._chunks, self._docs, *self._dense.values(), *self._units.values()):
            fh.close()
        shutil.rmtree(self.path, ignore_errors=True)

    def finish(self) -> None:
        for fh in (self._chunks, self._docs, *self._dense.values(), *self._units.values()):
            fh.close()
        path = self.path
        np.save(path / "chunk-offsets.npy", np.frombuffer(self._chunk_at, np.int64))
        np.save(path / "document-offsets.npy", np.frombuffer(self._doc_at, np.int64))
        np.save(path / "langs.npy", np.frombuffer(self._langs, np.uint8))
        np.save(path / "kinds.npy", np.frombuffer(self._kinds, np.uint8))
        np.save(path / "unit-first.npy", np.frombuffer(self._unit_first, np.int64))
        np.save(path / "unit-start.npy", np.frombuffer(self._unit_start, np.int32))
        np.save(path / "unit-end.npy", np.frombuffer(self._unit_end, np.int32))
        lengths = np.frombuffer(self._lengths, np.float32)
        avgdl = self.avgdl if self.avgdl is not None else (float(lengths.mean()) if len(lengths) else 1.0)
        lexical = INDEX.lexical
        postings = Bm25Index.from_postings(
            np.frombuffer(self._post_row, np.int32),
            np.frombuffer(self._post_term, np.int32),
            np.frombuffer(self._post_tf, np.float32),
            lengths,
            self._vocab,
            lexical.cjk,
            lexical.k1,
            lexical.b,
            avgdl,
        )
        postings.save(path)
        (path / "documents.json").write_text(json.dumps(self.docs, ensure_ascii=False), encoding="utf-8")
        (path / "stated.json").write_text(
            json.dumps(sorted(self._stated), ensure_ascii=False), encoding="utf-8"
        )
        if self.rows >= self.settings.exact_below:
            for m, dim in self.dims.items():
                matrix = np.memmap(
                    path / f"dense-{file_slug(m)}.f32", dtype=np.float32, mode="r", shape=(self.rows, dim)
                )
                faiss.write_index(ivf_index(matrix, self.settings), str(path / f"dense-{file_slug(m)}.ivf"))
        meta = {
            "id": self.id,
            "rows": self.rows,
            "units": self.n_units,
            "dims": self.dims,
            "avgdl": avgdl,
            "unit_dtype": self.unit_dtype.name,
        }
        (path / "meta.json").write_text(json.dumps(meta), encoding="utf-8")


def ivf_index(matrix: np.ndarray, settings: StoreSettings) -> faiss.Index:
    """IVF over 8-bit scalar-quantised codes (a quarter of float32's memory); search rescores its
    candidates exactly from the float32 vectors on disk, so the codes only need to find them."""
    rows, dim = matrix.shape
    lists = max(1, min(rows, int(settings.ivf_lists_per_sqrt * np.sqrt(rows))))
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFScalarQuantizer(
        quantizer, dim, lists, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
    )
    sample = np.random.default_rng(0).choice(rows, size=min(rows, lists * IVF_TRAIN_PER_LIST), replace=False)
    index.train(np.ascontiguousarray(matrix[np.sort(sample)], dtype=np.float32))
    step = 65_536
    for start in range(0, rows, step):
        index.add(np.ascontiguousarray(matrix[start : start + step], dtype=np.float32))
    return index


def _write(fh: Any, vectors: np.ndarray, dtype: Any, shape: Sequence[int]) -> None:
    data = np.ascontiguousarray(np.asarray(vectors).reshape(shape), dtype=dtype)
    fh.write(data.tobytes())
