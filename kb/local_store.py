"""The local store: segments on disk under a version link, read as questions touch them (kb/segment.py).

Layout, beside ``index_dir``::

    index_dir -> index_dir.versions/<version>/   manifest.json (settings, segments, one catalog entry per
                                                 document: its digest and the segment holding its live
                                                 copy), version.txt, segments.json, dead-df.json
    index_dir.segments/<segment>/                kb/segment.py; shared by versions, never changed

An ingest writes its added and changed documents as one new segment and a new version whose catalog points
at it; the old copies' rows are dead from then on. Publishing swaps the link with an atomic rename, so a
reader sees the old version or the new one, whole. Below ``INDEX.store.merge_below`` chunks the store keeps
one segment (an ingest merges, without embedding again), so a small corpus gives exactly the results of a
fresh build; above it, segments accumulate up to ``INDEX.store.max_segments`` before a merge.

Writing: kb/local_writer.py. BM25 stays exact across segments: each segment keeps its document frequencies, the version keeps those of
its dead rows (``dead-df.json``), and idf is computed per question from the live totals.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path

import numpy as np

from kb.lexical import idf, term_counts
from kb.segment import LANG_CODES, Segment
from kb.store import (
    IndexUnavailable,
    Scored,
    SentenceRows,
    StoreBase,
    check_models,
    chunk_models,
)
from kb.tuning import INDEX
from kb.types import KINDS, Chunk, Document

TERM_WEIGHTS = 200_000  # idf values kept per version before the cache starts over
_LANGS = np.array(LANG_CODES)
_KINDS = np.array(KINDS)


def versions_dir(index_dir: Path) -> Path:
    return index_dir.parent / f"{index_dir.name}.versions"


def segments_dir(index_dir: Path) -> Path:
    return index_dir.parent / f"{index_dir.name}.segments"


def copy_published(index_dir: Path, to: Path) -> None:
    """A copy of the published version and its segments at ``to`` (a name not in use): a private index to
    serve or break without touching the original (tests, benchmarks). Copying the link's folder alone
    would leave out the segments it lists."""
    src = Path(index_dir).resolve()
    shutil.copytree(src, versions_dir(to) / src.name)
    shutil.copytree(segments_dir(index_dir), segments_dir(to))
    to.symlink_to(Path(versions_dir(to).name) / src.name)


def published_version(index_dir: Path) -> str | None:
    """The version id the index link points at, cheaply, without loading anything."""
    try:
        return (Path(index_dir) / "version.txt").read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def read_manifest(index_dir: Path) -> dict:
    return json.loads((Path(index_dir) / "manifest.json").read_text(encoding="utf-8"))


class LocalStore(StoreBase):
    """One published version, opened for reading (see ``kb.store.Store``)."""

    def __init__(
        self, path: Path, manifest: dict, segments: list[Segment], dead_df: Mapping[str, int]
    ) -> None:
        self.path = path
        self._manifest = manifest
        self.segments = segments
        self.dead_df = dict(dead_df)
        self._dims = {e["id"]: int(e["dim"]) for e in manifest["embedders"]}
        self.bases = np.cumsum([0] + [s.rows for s in segments]).astype(np.int64)
        self.unit_bases = np.cumsum([0] + [s.units for s in segments]).astype(np.int64)
        catalog = manifest["documents"]
        self.live_masks = []
        for seg in segments:
            live = np.zeros(seg.rows, dtype=bool)
            for doc_id, (first, count, _) in seg.docs.items():
                entry = catalog.get(doc_id)
                if entry is not None and entry["segment"] == seg.id:
                    live[first : first + count] = True
            self.live_masks.append(live)
        self._live = np.concatenate(self.live_masks) if segments else np.zeros(0, bool)
        self._rows = np.flatnonzero(self._live).astype(np.int64)
        self._lang_codes = (
            np.concatenate([s.lang_codes for s in segments]) if segments else np.zeros(0, np.uint8)
        )
        self._kind_codes = (
            np.concatenate([s.kind_codes for s in segments]) if segments else np.zeros(0, np.uint8)
        )
        self._exact = len(self._rows) < INDEX.store.exact_below
        self._all_sentences: SentenceRows | None = None
        self._local = threading.local()
        self._weights: dict[str, float] = {}  # term -> idf: fixed for a version, asked for again and again

    @classmethod
    def open(
        cls, index_dir: Path, model_ids: list[str] | None = None, reuse: LocalStore | None = None
    ) -> LocalStore:
        index_dir = Path(index_dir)
        if not (index_dir / "manifest.json").exists():
            raise IndexUnavailable(f"no index at {index_dir}: run `kbq ingest` to build one from the corpus")
        path = index_dir.resolve()
        try:
            manifest = read_manifest(path)
            check_models(manifest, index_dir, model_ids)
            shared = {s.id: s for s in reuse.segments} if reuse is not None else {}
            segments = [
                shared.get(sid) or Segment(segments_dir(index_dir) / sid) for sid in manifest["segments"]
            ]
            dead_df = json.loads((path / "dead-df.json").read_text(encoding="utf-8"))
            store = cls(path, manifest, segments, dead_df)
            store._check()
        except IndexUnavailable:
            raise
        except (OSError, ValueError, KeyError, TypeError, RuntimeError, IndexError) as exc:
            raise IndexUnavailable(
                f"index at {index_dir} is corrupt ({type(exc).__name__}: {str(exc)[:120]}): "
                "run `kbq ingest --rebuild`"
            ) from None
        return store

    def _check(self) -> None:
        counts = self._manifest["counts"]
        if counts["chunks"] != len(self._rows) or counts["documents"] != len(self._manifest["documents"]):
            raise ValueError("chunk or document count differs from the manifest")
        for seg in self.segments:
            if seg.chunk_models != chunk_models(self._manifest):
                raise ValueError(f"segment {seg.id}: chunk vectors of other models than the manifest's")
            if any(v.shape != (seg.rows, self._dims[m]) for m, v in seg.dense.items()):
                raise ValueError(f"segment {seg.id}: chunk vectors differ from its rows")
            if any(v.shape != (seg.units, self._dims[m]) for m, v in seg.unit_vectors.items()):
                raise ValueError(f"segment {seg.id}: sentence vectors differ from its sentence table")
            if len(seg.unit_first) != seg.rows + 1:
                raise ValueError(f"segment {seg.id}: the sentence table differs from its rows")
        if self._exact:  # small: the postings and every chunk checked against its document text
            if any(seg.lexical.size != seg.rows for seg in self.segments):
                raise ValueError("lexical rows differ from the chunk rows")
            for _row, chunk in self.iter_chunks():
                doc = self.document(chunk.doc_id)
                if doc is None or doc.text[chunk.start : chunk.end] != chunk.text:
                    raise ValueError(f"chunk {chunk.chunk_id} does not match its document text")

    # ------------------------------------------------------------ what it holds

    def langs(self, rows: np.ndarray) -> np.ndarray:
        return _LANGS[self._lang_codes[rows]]

    def kinds(self, rows: np.ndarray) -> np.ndarray:
        return _KINDS[self._kind_codes[rows]]

    def _locate(self, row: int) -> tuple[Segment, int]:
        i = int(np.searchsorted(self.bases, row, side="right")) - 1
        if not (0 <= row < self.bases[-1]) or not self._live[row]:
            raise KeyError(f"no live chunk at row {row}")
        return self.segments[i], row - int(self.bases[i])

    def chunk(self, row: int) -> Chunk:
        seg, local = self._locate(int(row))
        return seg.chunk(local)

    def _segment_of(self, doc_id: str) -> tuple[int, Segment] | None:
        entry = self._manifest["documents"].get(doc_id)
        if entry is None:
            return None
        i = self._manifest["segments"].index(entry["segment"])
        return i, self.segments[i]

    def document(self, doc_id: str) -> Document | None:
        found = self._segment_of(doc_id)
        return found[1].document(doc_id) if found else None

    def document_ids(self) -> list[str]:
        return sorted(self._manifest["documents"])

    def digests(self) -> dict[str, str]:
        return {d: e["hash"] for d, e in self._manifest["documents"].items()}

    def document_rows(self, doc_id: str) -> np.ndarray:
        found = self._segment_of(doc_id)
        if found is None:
            return np.zeros(0, np.int64)
        i, seg = found
        first, end = seg.document_range(doc_id)
        return np.arange(first, end, dtype=np.int64) + self.bases[i]

    def iter_chunks(self) -> Iterator[tuple[int, Chunk]]:
        for row in self._rows.tolist():
            yield row, self.chunk(row)

    # ------------------------------------------------------------ dense

    def _by_segment(self, rows: np.ndarray) -> Iterator[tuple[int, Segment, np.ndarray, np.ndarray]]:
        """(segment index, segment, positions in ``rows``, local rows) for the segments ``rows`` touch."""
        which = np.searchsorted(self.bases, rows, side="right") - 1
        for i in np.unique(which).tolist():
            at = np.flatnonzero(which == i)
            yield i, self.segments[i], at, rows[at] - self.bases[i]

    def dense_search(self, model_id: str, vector: np.ndarray, k: int) -> Scored:
        self._with_chunks(model_id)
        found_rows, found_scores = [], []
        for i, seg in enumerate(self.segments):
            rows, scores = seg.dense_search(model_id, vector, k, self.live_masks[i])
            found_rows.append(rows + self.bases[i])
            found_scores.append(scores)
        return _best(found_rows, found_scores, k)

    def chunk_vectors(self, model_id: str, rows: np.ndarray) -> np.ndarray:
        self._with_chunks(model_id)
        out = np.zeros((len(rows), self._dims[model_id]), np.float32)
        for _, seg, at, local in self._by_segment(np.asarray(rows, np.int64)):
            out[at] = seg.chunk_vectors(model_id, local)
        return out

    def dense_scores(self, model_id: str, vector: np.ndarray, rows: np.ndarray) -> np.ndarray:
        self._with_chunks(model_id)
        out = np.zeros(len(rows), np.float32)
        for _, seg, at, local in self._by_segment(np.asarray(rows, np.int64)):
            out[at] = seg.dense_scores(model_id, vector, local)
        return out

    # ------------------------------------------------------------ lexical

    def _df(self, term: str) -> int:
        total = -self.dead_df.get(term, 0)
        for seg in self.segments:
            j = seg.lexical.vocab.get(term)
            if j is not None:
                total += int(seg.lexical.df[j])
        return total

    def term_weight(self, term: str) -> float:
        found = self._weights.get(term)
        if found is None:
            if len(self._weights) > TERM_WEIGHTS:
                self._weights.clear()
            df = self._df(term)
            found = self._weights[term] = float(idf(df if df > 0 else 1, self.size()))
        return found

    def _lexical(self, query: str) -> list[np.ndarray]:
        """Each segment's BM25 scores for ``query``, kept for the thread's next call with it."""
        cached = getattr(self._local, "lexical", None)
        if cached is not None and cached[0] == query:
            return cached[1]
        weights = {t: self.term_weight(t) * n for t, n in term_counts(query).items() if self._df(t) > 0}
        scores = [seg.lexical.accumulate(weights) for seg in self.segments]
        self._local.lexical = (query, scores)
        return scores

    def lexical_scores(self, query: str, rows: np.ndarray) -> np.ndarray:
        per_segment = self._lexical(query)
        out = np.zeros(len(rows), np.float32)
        for i, _, at, local in self._by_segment(np.asarray(rows, np.int64)):
            out[at] = per_segment[i][local]
        return out

    def lexical_search(self, query: str, k: int) -> Scored:
        found_rows, found_scores = [], []
        for i, scores in enumerate(self._lexical(query)):
            rows = np.flatnonzero((scores > 0) & self.live_masks[i])
            found_rows.append(rows + self.bases[i])
            found_scores.append(scores[rows])
        return _best(found_rows, found_scores, k)

    # ------------------------------------------------------------ sentences

    def sentences(self, rows: np.ndarray, models: Collection[str] | None = None) -> SentenceRows:
        rows = np.asarray(rows, np.int64)
        if self._exact and len(rows) == len(self._rows) and np.array_equal(rows, self._rows):
            if self._all_sentences is None:
                self._all_sentences = self._sentences(rows, None)
            return self._all_sentences.only(models)
        return self._sentences(rows, models)

    def _sentences(self, rows: np.ndarray, models: Collection[str] | None) -> SentenceRows:
        models = list(self._dims) if models is None else list(models)
        parts = []
        for i, seg, _, local in self._by_segment(rows):
            units = seg.unit_index(local)
            parts.append(
                (
                    units + self.unit_bases[i],
                    seg.unit_rows(units) + self.bases[i],
                    np.asarray(seg.unit_start[units], np.int32),
                    np.asarray(seg.unit_end[units], np.int32),
                    {m: seg.sentence_vectors(m, units) for m in models},
                )
            )
        if not parts:
            return SentenceRows.empty({m: self._dims[m] for m in models})
        if len(parts) == 1:
            sid, row, start, end, vectors = parts[0]
            return SentenceRows(sid, row, start, end, vectors)
        return SentenceRows(
            np.concatenate([p[0] for p in parts]),
            np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2] for p in parts]),
            np.concatenate([p[3] for p in parts]),
            {m: np.vstack([p[4][m] for p in parts]) for m in models},
        )

    def stated(self, term: str, inside: bool = False) -> bool:
        if any(term in seg.stated for seg in self.segments):
            return True
        # a substring scan of the vocabulary: cheap for a small store, too slow for a large one
        return inside and self._exact and any(term in t for seg in self.segments for t in seg.stated)

    def close(self) -> None:
        """Segments close when no store uses them (a reloaded store shares its unchanged ones)."""


def _best(rows: list[np.ndarray], scores: list[np.ndarray], k: int) -> Scored:
    if not rows:
        return Scored.empty()
    all_rows, all_scores = np.concatenate(rows).astype(np.int64), np.concatenate(scores).astype(np.float32)
    if len(all_rows) > k > 0:
        keep = np.argpartition(-all_scores, k - 1)[:k]
        all_rows, all_scores = all_rows[keep], all_scores[keep]
    order = np.argsort(all_rows)
    return Scored(all_rows[order], all_scores[order])
