"""BM25 over a sparse document-term matrix; saved as plain npz + json, no pickle.

Scoring reads the matrix's compressed-column arrays directly; scipy builds the matrix at ingest and is
never imported to answer (importing scipy.sparse alone costs a cold ``kbq ask`` ~0.1-0.2 s)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from kb.text import tokenize


class Columns(NamedTuple):
    """A (documents × terms) matrix in compressed sparse column form, as scipy keeps it."""

    data: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray
    shape: tuple[int, int]


class Bm25Index:
    """Okapi BM25. ``scores`` returns one score per document, higher is better."""

    def __init__(self, columns: Columns, vocab: dict[str, int], cjk: str, idf: np.ndarray) -> None:
        self.columns = columns
        self.vocab = vocab
        self.cjk = cjk
        self.idf = idf
        self._max_idf = float(idf.max()) if idf.size else 1.0

    @property
    def size(self) -> int:
        """Documents (rows)."""
        return int(self.columns.shape[0])

    @property
    def weights(self) -> Any:
        """The BM25 weights as a ``scipy.sparse.csc_matrix`` (imports scipy)."""
        from scipy import sparse

        c = self.columns
        return sparse.csc_matrix((c.data, c.indices, c.indptr), shape=c.shape)

    @classmethod
    def build(cls, texts: Sequence[str], cjk: str = "bigram", k1: float = 1.2, b: float = 0.75) -> Bm25Index:
        from scipy import sparse

        vocab: dict[str, int] = {}
        rows, cols, tfs = [], [], []
        lengths = np.zeros(len(texts), dtype=np.float32)
        for i, text in enumerate(texts):
            counts = Counter(tokenize(text, cjk))
            lengths[i] = sum(counts.values())
            for term, tf in counts.items():
                rows.append(i)
                cols.append(vocab.setdefault(term, len(vocab)))
                tfs.append(tf)
        shape = (len(texts), max(len(vocab), 1))
        tf = sparse.csr_matrix((np.array(tfs, dtype=np.float32), (rows, cols)), shape=shape)
        df = np.bincount(np.array(cols, dtype=np.int64), minlength=shape[1]).astype(np.float32)
        idf = np.log(1.0 + (len(texts) - df + 0.5) / (df + 0.5))
        avgdl = float(lengths.mean()) if len(texts) else 1.0
        norm = k1 * (1 - b + b * lengths / max(avgdl, 1e-9))
        tf = tf.tocoo()
        data = tf.data * (k1 + 1) / (tf.data + norm[tf.row]) * idf[tf.col]
        weights = sparse.csc_matrix((data.astype(np.float32), (tf.row, tf.col)), shape=shape)
        columns = Columns(weights.data, weights.indices, weights.indptr, shape)
        return cls(columns, vocab, cjk, idf.astype(np.float32))

    def term_weight(self, term: str) -> float:
        """IDF of ``term``; a term the corpus never uses counts as the rarest."""
        i = self.vocab.get(term)
        return float(self.idf[i]) if i is not None else self._max_idf

    def coverage(self, query_terms: AbstractSet[str], text_terms: AbstractSet[str]) -> float:
        """IDF-weighted share of the query's terms that ``text`` contains (0..1)."""
        total = sum(self.term_weight(t) for t in query_terms)
        return sum(self.term_weight(t) for t in query_terms & text_terms) / total if total else 0.0

    def scores(self, query: str) -> np.ndarray:
        counts = Counter(t for t in tokenize(query, self.cjk) if t in self.vocab)
        out = np.zeros(self.size, dtype=np.float32)
        # the CSC arrays sliced directly: scipy's getcol builds a matrix per term, 20x the cost
        indptr, indices, data = self.columns.indptr, self.columns.indices, self.columns.data
        for term, qtf in counts.items():
            j = self.vocab[term]
            out[indices[indptr[j] : indptr[j + 1]]] += data[indptr[j] : indptr[j + 1]] * qtf
        return out

    def save(self, folder: Path) -> None:
        c = self.columns
        np.savez(
            folder / "lexical.npz",
            data=c.data,
            indices=c.indices,
            indptr=c.indptr,
            shape=np.array(c.shape),
            idf=self.idf,
        )
        (folder / "lexical-vocab.json").write_text(json.dumps({"cjk": self.cjk, "vocab": self.vocab}))

    @classmethod
    def load(cls, folder: Path) -> Bm25Index:
        with np.load(folder / "lexical.npz", allow_pickle=False) as z:
            rows, cols = (int(n) for n in z["shape"])
            columns = Columns(z["data"], z["indices"], z["indptr"], (rows, cols))
            idf = z["idf"]
        if len(columns.indptr) != cols + 1 or len(columns.data) != len(columns.indices):
            raise ValueError("lexical.npz is not a compressed sparse column matrix")
        meta = json.loads((folder / "lexical-vocab.json").read_text())
        return cls(columns, meta["vocab"], meta["cjk"], idf)
