"""BM25 over a sparse document-term matrix; saved as plain npz + json, no pickle."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import sparse

from kb.text import tokenize


class Bm25Index:
    """Okapi BM25. ``scores`` returns one score per document, higher is better."""

    def __init__(self, weights: sparse.csc_matrix, vocab: dict[str, int], cjk: str, idf: np.ndarray) -> None:
        self.weights = weights
        self.vocab = vocab
        self.cjk = cjk
        self.idf = idf
        self._max_idf = float(idf.max()) if idf.size else 1.0

    @classmethod
    def build(cls, texts: Sequence[str], cjk: str = "bigram", k1: float = 1.2, b: float = 0.75) -> Bm25Index:
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
        return cls(weights, vocab, cjk, idf.astype(np.float32))

    def term_weight(self, term: str) -> float:
        """IDF of ``term``; a term the corpus never uses counts as the rarest."""
        i = self.vocab.get(term)
        return float(self.idf[i]) if i is not None else self._max_idf

    def coverage(self, query_terms: set[str], text_terms: set[str]) -> float:
        """IDF-weighted share of the query's terms that ``text`` contains (0..1)."""
        total = sum(self.term_weight(t) for t in query_terms)
        return sum(self.term_weight(t) for t in query_terms & text_terms) / total if total else 0.0

    def scores(self, query: str) -> np.ndarray:
        counts = Counter(t for t in tokenize(query, self.cjk) if t in self.vocab)
        out = np.zeros(self.weights.shape[0], dtype=np.float32)
        # the CSC arrays sliced directly: scipy's getcol builds a matrix per term, 20x the cost
        indptr, indices, data = self.weights.indptr, self.weights.indices, self.weights.data
        for term, qtf in counts.items():
            j = self.vocab[term]
            out[indices[indptr[j] : indptr[j + 1]]] += data[indptr[j] : indptr[j + 1]] * qtf
        return out

    def save(self, folder: Path) -> None:
        w = self.weights
        np.savez(
            folder / "lexical.npz",
            data=w.data,
            indices=w.indices,
            indptr=w.indptr,
            shape=np.array(w.shape),
            idf=self.idf,
        )
        (folder / "lexical-vocab.json").write_text(json.dumps({"cjk": self.cjk, "vocab": self.vocab}))

    @classmethod
    def load(cls, folder: Path) -> Bm25Index:
        with np.load(folder / "lexical.npz", allow_pickle=False) as z:
            weights = sparse.csc_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"]))
            idf = z["idf"]
        meta = json.loads((folder / "lexical-vocab.json").read_text())
        return cls(weights, meta["vocab"], meta["cjk"], idf)
