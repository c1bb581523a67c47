"""Vectors read from disk a few rows at a time, as a question needs them (a large segment's, kb/segment.py).

Rows are read with ``pread``, not through a memory map: mapped pages count in the process's RSS as questions
touch them (6.5 GB of a million-chunk store's after 210 questions, with ``MADV_RANDOM`` or without), while read
pages stay in the kernel's page cache, shared and dropped under pressure, at the same cost per question.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import faiss
import numpy as np


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


def float32(vectors: np.ndarray) -> np.ndarray:
    """Vectors as float32; float16 through FAISS's decoder (3x numpy's astype, to the same bits)."""
    if vectors.dtype == np.float16 and len(vectors):
        codes = np.ascontiguousarray(vectors).view(np.uint8).reshape(len(vectors), -1)
        return faiss.ScalarQuantizer(vectors.shape[1], faiss.ScalarQuantizer.QT_fp16).decode(codes)
    return np.asarray(vectors, dtype=np.float32)
