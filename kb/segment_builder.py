"""Writing one segment of the local store (kb/segment.py says what it holds), streaming: documents arrive in
batches and go to disk as they come; ``finish`` adds the postings and, for a large segment, IVF indexes."""

from __future__ import annotations

import json
import shutil
from array import array
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from kb.lexical import Bm25Index, term_counts
from kb.segment import LANG_CODES
from kb.store import DocumentRecord, file_slug, indexed_text
from kb.text import tokenize
from kb.tuning import INDEX, StoreSettings
from kb.types import KINDS, Chunk, quotable

IVF_TRAIN_PER_LIST = 40  # k-means points per IVF list, within FAISS's advice (39-256)


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
        chunk_models: Sequence[str] | None = None,
    ) -> None:
        self.path = path
        self.id = segment_id
        self.dims = dict(dims)
        # the models with chunk vectors (all when None); the others have sentence vectors only
        self.chunk_models = list(self.dims) if chunk_models is None else list(chunk_models)
        self.avgdl = avgdl  # None: this segment's own mean chunk length (a full build)
        self.settings = settings or INDEX.store
        self.unit_dtype = np.dtype(self.settings.sentence_dtype)
        path.mkdir(parents=True)
        self._chunks = (path / "chunks.jsonl").open("wb")
        self._docs = (path / "documents.jsonl").open("wb")
        self._dense = {m: (path / f"dense-{file_slug(m)}.f32").open("wb") for m in self.chunk_models}
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
        for m in self.chunk_models:
            _write(self._dense[m], record.vectors[m], np.float32, (len(record.chunks), self.dims[m]))
        for m in self.dims:
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
            for m in self.chunk_models:
                dim = self.dims[m]
                matrix = np.memmap(
                    path / f"dense-{file_slug(m)}.f32", dtype=np.float32, mode="r", shape=(self.rows, dim)
                )
                faiss.write_index(ivf_index(matrix, self.settings), str(path / f"dense-{file_slug(m)}.ivf"))
        meta = {
            "id": self.id,
            "rows": self.rows,
            "units": self.n_units,
            "dims": self.dims,
            "chunk_models": self.chunk_models,
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
