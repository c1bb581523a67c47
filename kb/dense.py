"""FAISS inner-product index over L2-normalised vectors (cosine similarity).

Fusion needs every passage's score, so one query is scored against all stored vectors with FAISS's
inner-product kernel over a matrix read once (``inner_products``), rather than a search for k = every
row, which also sorts them and wakes FAISS's OpenMP threads."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np


class DenseIndex:
    def __init__(self, index: faiss.Index) -> None:
        self.index = index
        self._matrix: np.ndarray | None = None

    @classmethod
    def build(cls, vectors: np.ndarray) -> DenseIndex:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        index = faiss.IndexFlatIP(vectors.shape[1])
        index.add(vectors)
        return cls(index)

    @property
    def size(self) -> int:
        return int(self.index.ntotal)

    def vectors(self) -> np.ndarray:
        return (
            self.index.reconstruct_n(0, self.size) if self.size else np.zeros((0, self.index.d), np.float32)
        )

    def matrix(self) -> np.ndarray:
        """The stored vectors as one read-only (size, dim) float32 array, read from FAISS once."""
        if self._matrix is None:
            matrix = np.ascontiguousarray(self.vectors(), dtype=np.float32)
            matrix.flags.writeable = False
            self._matrix = matrix
        return self._matrix

    def scores(self, query: np.ndarray) -> np.ndarray:
        """Cosine similarity of ``query`` to every stored vector, in storage order."""
        return inner_products(self.matrix(), query)

    def save(self, path: Path) -> None:
        faiss.write_index(self.index, str(path))

    @classmethod
    def load(cls, path: Path) -> DenseIndex:
        return cls(faiss.read_index(str(path)))


def inner_products(matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
    """``matrix @ query`` through FAISS's kernel, the one its search runs for a single query: the same
    scores as an IndexFlatIP search to the bit, single-threaded (a BLAS product's last bits depend on
    its thread count, and its idle threads spin on the other core)."""
    out = np.zeros(len(matrix), dtype=np.float32)
    if not len(matrix):
        return out
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    vector = np.ascontiguousarray(query, dtype=np.float32).reshape(-1)
    if vector.size != matrix.shape[1]:  # the kernel would read past the query
        raise ValueError(f"query has {vector.size} dimensions, the vectors {matrix.shape[1]}")
    faiss.fvec_inner_products_ny(  # type: ignore[attr-defined]
        faiss.swig_ptr(out), faiss.swig_ptr(vector), faiss.swig_ptr(matrix), matrix.shape[1], len(matrix)
    )
    return out
