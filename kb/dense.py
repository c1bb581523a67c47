"""FAISS inner-product index over L2-normalised vectors (cosine similarity).

FAISS is the file format and the batch search; one query scores against the stored vectors as one
matrix-vector product, because fusion needs every passage's score and a FAISS search for all of them
(k = the index size) sorts them first, which costs ~25x more at this size."""

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
        if not self.size:
            return np.zeros(0, dtype=np.float32)
        return self.matrix() @ np.asarray(query, dtype=np.float32).reshape(-1)

    def save(self, path: Path) -> None:
        faiss.write_index(self.index, str(path))

    @classmethod
    def load(cls, path: Path) -> DenseIndex:
        return cls(faiss.read_index(str(path)))
