"""BM25 over a sparse document-term matrix; saved as plain npy + json, no pickle.

The matrix holds each term's saturated frequency, tf·(k1+1) / (tf + k1·(1 − b + b·len/avgdl)); the idf is
applied when a question is scored, from document frequencies that may span several indexes (the local
store's segments, kb/local_store.py), so adding a segment never rewrites an old one. Every store weighs
terms with these functions (the Milvus store sends the same saturated weights as sparse vectors).

Scoring reads the matrix's compressed-column arrays directly; scipy builds the matrix at ingest and is
never imported to answer (importing scipy.sparse alone costs a cold ``kbq ask`` ~0.1-0.2 s)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np

from kb.text import tokenize
from kb.tuning import INDEX


class Columns(NamedTuple):
    """A (documents × terms) matrix in compressed sparse column form, as scipy keeps it."""

    data: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray
    shape: tuple[int, int]


def term_counts(text: str, cjk: str = INDEX.lexical.cjk) -> Counter[str]:
    """The BM25 terms of a text (kb.text.tokenize) with their frequencies."""
    return Counter(tokenize(text, cjk))


def idf(df: np.ndarray | float, n_docs: int) -> np.ndarray:
    """Okapi BM25's idf, never negative: log(1 + (N − df + 0.5) / (df + 0.5)), in float32."""
    df = np.asarray(df, dtype=np.float64)
    return np.log(1.0 + (n_docs - df + 0.5) / (df + 0.5)).astype(np.float32)


def saturate(tf: np.ndarray, length: np.ndarray, avgdl: float, k1: float, b: float) -> np.ndarray:
    """Each term frequency's BM25 weight before idf, given its document's length."""
    norm = k1 * (1 - b + b * length / max(avgdl, 1e-9))
    return (tf * (k1 + 1) / (tf + norm)).astype(np.float32)


class Bm25Index:
    """Okapi BM25. ``scores`` returns one score per document, higher is better."""

    def __init__(
        self, columns: Columns, vocab: dict[str, int], cjk: str, df: np.ndarray, avgdl: float
    ) -> None:
        self.columns = columns
        self.vocab = vocab
        self.cjk = cjk
        self.df = df
        self.avgdl = avgdl
        self.idf = idf(df, self.size)

    @property
    def size(self) -> int:
        """Documents (rows)."""
        return int(self.columns.shape[0])

    @property
    def weights(self) -> Any:
        """The BM25 weights as a ``scipy.sparse.csc_matrix`` (imports scipy)."""
        from scipy import sparse

        c = self.columns
        return sparse.csc_matrix((c.data * self.idf[_column_of(c)], c.indices, c.indptr), shape=c.shape)

    @classmethod
    def build(
        cls,
        texts: Sequence[str],
        cjk: str = "bigram",
        k1: float = 1.2,
        b: float = 0.75,
        avgdl: float | None = None,
    ) -> Bm25Index:
        """``avgdl``: the average length to normalise by, by default these texts' own."""
        return cls.from_counts([term_counts(t, cjk) for t in texts], cjk, k1, b, avgdl)

    @classmethod
    def from_counts(
        cls,
        counts: Sequence[Mapping[str, int]],
        cjk: str = "bigram",
        k1: float = 1.2,
        b: float = 0.75,
        avgdl: float | None = None,
    ) -> Bm25Index:
        vocab: dict[str, int] = {}
        rows, cols, tfs = [], [], []
        lengths = np.zeros(len(counts), dtype=np.float32)
        for i, terms in enumerate(counts):
            lengths[i] = sum(terms.values())
            for term, tf in terms.items():
                rows.append(i)
                cols.append(vocab.setdefault(term, len(vocab)))
                tfs.append(tf)
        return cls.from_postings(
            np.array(rows, np.int64),
            np.array(cols, np.int64),
            np.array(tfs, np.float32),
            lengths,
            vocab,
            cjk,
            k1,
            b,
            avgdl,
        )

    @classmethod
    def from_postings(
        cls,
        rows: np.ndarray,
        terms: np.ndarray,
        tfs: np.ndarray,
        lengths: np.ndarray,
        vocab: dict[str, int],
        cjk: str = "bigram",
        k1: float = 1.2,
        b: float = 0.75,
        avgdl: float | None = None,
    ) -> Bm25Index:
        """From (row, term id, count) triples, each document's length and the term ids' ``vocab``."""
        from scipy import sparse

        shape = (len(lengths), max(len(vocab), 1))
        if avgdl is None:
            avgdl = float(lengths.mean()) if len(lengths) else 1.0
        rows = np.asarray(rows, dtype=np.int64)
        terms = np.asarray(terms, dtype=np.int64)
        data = saturate(np.asarray(tfs, dtype=np.float32), lengths[rows], avgdl, k1, b)
        weights = sparse.csc_matrix((data, (rows, terms)), shape=shape)
        weights.sort_indices()
        df = np.bincount(terms, minlength=shape[1]).astype(np.int64)
        columns = Columns(
            weights.data, weights.indices.astype(np.int32), weights.indptr.astype(np.int64), shape
        )
        return cls(columns, vocab, cjk, df, avgdl)

    def query(self, query: str) -> Counter[str]:
        """The query's terms (with their counts) that this index knows."""
        return Counter({t: n for t, n in term_counts(query, self.cjk).items() if t in self.vocab})

    def term_weight(self, term: str) -> float:
        """IDF of ``term``; a term the corpus never uses counts as the rarest."""
        i = self.vocab.get(term)
        return float(self.idf[i] if i is not None else idf(1, self.size))

    def scores(self, query: str) -> np.ndarray:
        """BM25 of ``query`` against every document, with this index's own idf."""
        return self.accumulate({t: float(self.idf[self.vocab[t]]) * n for t, n in self.query(query).items()})

    def accumulate(self, weights: Mapping[str, float]) -> np.ndarray:
        """Σ over terms of weight × the term's column: with weight = idf × query count, BM25."""
        out = np.zeros(self.size, dtype=np.float32)
        # the CSC arrays sliced directly: scipy's getcol builds a matrix per term, 20x the cost
        indptr, indices, data = self.columns.indptr, self.columns.indices, self.columns.data
        for term, weight in weights.items():
            j = self.vocab.get(term)
            if j is not None:
                a, b = indptr[j], indptr[j + 1]
                out[indices[a:b]] += data[a:b] * np.float32(weight)
        return out

    def save(self, folder: Path) -> None:
        c = self.columns
        for name, array in (("data", c.data), ("indices", c.indices), ("indptr", c.indptr), ("df", self.df)):
            np.save(folder / f"lexical-{name}.npy", array, allow_pickle=False)
        meta = {"cjk": self.cjk, "shape": list(c.shape), "avgdl": self.avgdl, "vocab": self.vocab}
        (folder / "lexical-vocab.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path, mmap: bool = False) -> Bm25Index:
        """``mmap``: leave the postings on disk, read as questions touch them."""
        mode: Literal["r"] | None = "r" if mmap else None
        arrays = {
            name: np.load(folder / f"lexical-{name}.npy", mmap_mode=mode, allow_pickle=False)
            for name in ("data", "indices", "indptr", "df")
        }
        meta = json.loads((folder / "lexical-vocab.json").read_text(encoding="utf-8"))
        rows, cols = (int(n) for n in meta["shape"])
        columns = Columns(arrays["data"], arrays["indices"], arrays["indptr"], (rows, cols))
        if len(columns.indptr) != cols + 1 or len(columns.data) != len(columns.indices):
            raise ValueError("the lexical postings are not a compressed sparse column matrix")
        return cls(columns, meta["vocab"], meta["cjk"], np.asarray(arrays["df"]), float(meta["avgdl"]))


def _column_of(columns: Columns) -> np.ndarray:
    return np.repeat(np.arange(columns.shape[1]), np.diff(columns.indptr))
