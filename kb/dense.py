"""FAISS inner-product index over L2-normalised vectors (cosine similarity)."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np


class DenseIndex:
    def __init__(self, index: faiss.Index) -> None:
        self.index = index

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

    def scores(self, query: np.ndarray) -> np.ndarray:
        """Cosine similarity of ``query`` to every stored vector, in storage order."""
        out = np.zeros(self.size, dtype=np.float32)
        if not self.size:
            return out
        sims, ids = self.index.search(np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32), self.size)
        out[ids[0]] = sims[0]
        return out

    def save(self, path: Path) -> None:
        faiss.write_index(self.index, str(path))

    @classmethod
    def load(cls, path: Path) -> DenseIndex:
        return cls(faiss.read_index(str(path)))
