"""Embeddings for ``python -m evals.public``, cached as ``.npy`` under ``~/.cache/kbq-bench`` (``--cache`` or
``KBQ_BENCH_CACHE``), keyed by dataset, model, unit and a digest of the texts, so reruns take seconds.

Large encodings are saved in slices as they go, so a stopped run resumes; ``timings.json`` beside the vectors
records how long each first encoding took.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kb.embed import Embedder

DEFAULT_CACHE = Path(os.environ.get("KBQ_BENCH_CACHE", "~/.cache/kbq-bench")).expanduser()


def _digest(texts: Sequence[str]) -> str:
    h = hashlib.sha1()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()[:12]


@dataclass
class Cache:
    folder: Path
    log: Callable[[str], None] = print
    timings: dict[str, dict] = field(default_factory=dict)  # cache file -> how long encoding it took

    def __post_init__(self) -> None:
        self._timings_file = self.folder / "timings.json"
        try:
            self.timings = json.loads(self._timings_file.read_text())
        except (OSError, ValueError):
            self.timings = {}

    def embed(self, embedder: Embedder, texts: Sequence[str], key: str, queries: bool = False) -> np.ndarray:
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{key}-{embedder.model_id}-{_digest(texts)}") + ".npy"
        path = self.folder / name
        if path.exists():
            vectors = np.load(path, allow_pickle=False)
            if vectors.shape == (len(texts), embedder.dim):
                return vectors
        self.folder.mkdir(parents=True, exist_ok=True)
        encode = embedder.embed_queries if queries else embedder.embed_documents
        start, parts, step, seconds = time.perf_counter(), [], 1024, 0.0
        for n, i in enumerate(range(0, len(texts), step)):
            part = path.with_name(f"{path.stem}.part{n}.npy")  # slices persist, so a stopped run resumes
            if part.exists():
                parts.append(np.load(part, allow_pickle=False))
                continue
            t = time.perf_counter()
            parts.append(encode(list(texts[i : i + step])).astype(np.float32))
            seconds += time.perf_counter() - t
            if len(texts) > step:
                np.save(part, parts[-1])
                self.log(
                    f"  {key} {embedder.model_id}: {min(i + step, len(texts))}/{len(texts)} "
                    f"({time.perf_counter() - start:.0f}s)"
                )
        vectors = np.vstack(parts) if parts else np.zeros((0, embedder.dim), np.float32)
        tmp = path.with_name(f"{path.stem}.tmp.npy")
        np.save(tmp, vectors)
        os.replace(tmp, path)
        for stale in path.parent.glob(f"{path.stem}.part*.npy"):
            stale.unlink()
        if seconds:
            self.record(
                name,
                {"texts": len(texts), "seconds": round(seconds, 1), "model": embedder.model_id, "key": key},
            )
        return vectors

    def record(self, name: str, timing: dict) -> None:
        """Adds one encoding time to timings.json, merged with what other runs wrote meanwhile."""
        try:
            self.timings = {**json.loads(self._timings_file.read_text()), **self.timings}
        except (OSError, ValueError):
            pass
        self.timings[name] = timing
        tmp = self._timings_file.with_name(f".timings-{os.getpid()}.json")
        tmp.write_text(json.dumps(self.timings, indent=1))
        os.replace(tmp, self._timings_file)

    def seconds(self, key: str, model_id: str) -> float | None:
        hits = [t["seconds"] for t in self.timings.values() if t["key"] == key and t["model"] == model_id]
        return hits[-1] if hits else None
