"""Rows read from Milvus turned into what kb works with: postings, catalog entries, sentence tables."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from kb.lexical import saturate
from kb.store import (
    Scored,
    SentenceRows,
)

if TYPE_CHECKING:
    pass

from kb.milvus_schema import (
    EMPTY_DIM,
    _live,
    _scan,
)


class _Postings:
    """BM25 postings by term dimension over the live rows of an exact store: the stored weights taken back
    to term counts and saturated again with the live rows' own average length, so that a small store scores
    as a fresh build of its live chunks would (as the local store does)."""

    def __init__(
        self, sparse: list[dict], lengths: np.ndarray, built_avgdl: float | None, k1: float, b: float
    ):
        pos, dims, weights = [], [], []
        for i, vec in enumerate(sparse):
            for d, w in vec.items():
                if int(d) != EMPTY_DIM:
                    pos.append(i)
                    dims.append(int(d))
                    weights.append(float(w))
        at, dim, w = np.array(pos, np.int64), np.array(dims, np.int64), np.array(weights, np.float64)
        length = lengths[at].astype(np.float64)
        norm = k1 * (1 - b + b * length / max(built_avgdl or 1.0, 1e-9))
        tf = np.maximum(np.rint(w * norm / np.maximum(k1 + 1 - w, 1e-12)), 1.0)  # saturate, inverted
        avgdl = float(lengths.mean()) if len(lengths) else 1.0
        data = saturate(tf.astype(np.float32), length.astype(np.float32), avgdl, k1, b)
        order = np.lexsort((at, dim))
        uniq, first = np.unique(dim[order], return_index=True)
        self.vocab = dict(zip(uniq.tolist(), range(len(uniq)), strict=True))
        self.indptr = np.append(first, len(order)).astype(np.int64)
        self.indices, self.data, self.size = at[order], data[order], len(lengths)

    def df(self, dim: int) -> int:
        j = self.vocab.get(dim)
        return 0 if j is None else int(self.indptr[j + 1] - self.indptr[j])

    def accumulate(self, weights: dict[int, float]) -> np.ndarray:
        out = np.zeros(self.size, np.float32)
        for dim, weight in weights.items():
            j = self.vocab.get(dim)
            if j is not None:
                a, b = self.indptr[j], self.indptr[j + 1]
                out[self.indices[a:b]] += self.data[a:b] * np.float32(weight)
        return out


@dataclass
class _Entry:
    """A stored document, as a catalog knows it."""

    part: int  # the pk of its first piece; the others follow
    pieces: int
    digest: str
    first_row: int
    n_chunks: int
    first_sid: int
    n_sents: int
    born: int


_ENTRY = [f.name for f in fields(_Entry)]


def _catalog(client: Any, collection: str, version: int, end: int) -> dict[str, _Entry]:
    windows = _scan(client, collection, "part", f"piece == 0 and {_live(version)}", ["doc_id", *_ENTRY], end)
    return {r["doc_id"]: _Entry(*(r[k] for k in _ENTRY)) for rows in windows for r in rows}


def _sentence_rows(rows: list[dict], field: dict[str, str], dims: dict[str, int]) -> SentenceRows:
    return SentenceRows(
        np.array([r["sid"] for r in rows], np.int64),
        np.array([r["row"] for r in rows], np.int64),
        np.array([r["start"] for r in rows], np.int32),
        np.array([r["end"] for r in rows], np.int32),
        {m: np.array([r[f] for r in rows], np.float32).reshape(-1, dims[m]) for m, f in field.items()},
    )


def _concat(parts: list[SentenceRows], dims: dict[str, int]) -> SentenceRows:
    if not parts:
        return SentenceRows.empty(dims)
    return SentenceRows(
        np.concatenate([p.sid for p in parts]),
        np.concatenate([p.row for p in parts]),
        np.concatenate([p.start for p in parts]),
        np.concatenate([p.end for p in parts]),
        {m: np.vstack([p.vectors[m] for p in parts]) for m in dims},
    )


def _take(rows: SentenceRows, index: np.ndarray) -> SentenceRows:
    vectors = {m: v[index] for m, v in rows.vectors.items()}
    return SentenceRows(rows.sid[index], rows.row[index], rows.start[index], rows.end[index], vectors)


def _unit(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.maximum(norms, 1e-12)).astype(np.float32)


def _best(rows: np.ndarray, scores: np.ndarray, k: int) -> Scored:
    """The ``k`` best (ties to the lower row), in row order."""
    rows, scores = np.asarray(rows, np.int64), np.asarray(scores, np.float32)
    if len(rows) > k:
        keep = np.lexsort((rows, -scores))[: max(k, 0)]
        rows, scores = rows[keep], scores[keep]
    order = np.argsort(rows)
    return Scored(rows[order], scores[order])
