"""all-MiniLM-L6-v2 through onnxruntime: the fast path for a process that answers many questions.

Why: the numpy forward pass (kb/minilm_query.py) streams every weight matrix through BLAS, which packs it
anew on each call; onnxruntime packs the weights once per session and runs a 33-token question in about
half the CPU time (``python -m benchmarks.minilm``). Creating the session costs ~0.3 s, more than a whole
cold ``kbq ask``, so a one-shot process keeps the numpy path (``kb.embed.load_embedder(fast_start=True)``).

Same network: the graph below is BertModel (post-LayerNorm, exact erf GELU), mean pooling over the attention
mask and L2 normalisation, written with standard ONNX operators from the model's own ``config.json``; the
weights are the memory-mapped ``model.safetensors`` tensors handed to the session, so nothing is exported,
downloaded or cached on disk. Vectors agree with sentence-transformers to a cosine of 1 - 1e-6
(tests/kb/test_minilm_onnx.py). Building the graph needs the ``onnx`` package, once per process.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kb.minilm_query import MODEL_ID, load_model, padded_batches
from kb.onnx_graph import Graph, session


class MiniLMOnnxEncoder:
    """``encode(texts) -> (n, 384) float32``, L2-normalised; the session is built on first use and is
    thread-safe. ``threads`` is onnxruntime's intra-op thread count: 1 for questions (a worker per
    core runs them side by side), the core count to embed documents in bulk."""

    model_id = MODEL_ID
    dim = 384

    def __init__(self, model_dir: Path | None = None, threads: int = 1) -> None:
        self._model_dir = model_dir
        self._threads = threads
        self._lock = threading.Lock()
        self._loaded: tuple[Any, Any] | None = None  # (tokenizer, InferenceSession)

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        tokenizer, session = self._load()
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for rows, ids, mask in padded_batches(tokenizer, texts, batch_size):
            out[rows] = session.run(None, {"ids": ids, "mask": mask})[0]
        return out

    def _load(self) -> tuple[Any, Any]:
        with self._lock:
            if self._loaded is None:
                self._loaded = _session(self._model_dir, self._threads)
            return self._loaded


def _session(model_dir: Path | None, threads: int) -> tuple[Any, Any]:
    model = load_model(model_dir, threads=None)
    graph, weights = _graph(model.config, model.weights)
    return model.tokenizer, session(graph, weights, threads)


def _graph(config: dict[str, Any], w: dict[str, np.ndarray]) -> tuple[bytes, dict[str, np.ndarray]]:
    """The serialised graph (inputs ``ids`` int64 and ``mask`` float32, both (n, t); output (n, 384))
    and the weights it names."""
    g = Graph()
    heads, hidden, eps = config["num_attention_heads"], config["hidden_size"], config["layer_norm_eps"]
    head_dim = hidden // heads

    def dense(x: str, name: str) -> str:  # x @ W.T + b, with W as stored: (out, in)
        return g.op(
            "Gemm",
            x,
            g.weight(name + ".weight", w[name + ".weight"]),
            g.weight(name + ".bias", w[name + ".bias"]),
            transB=1,
        )

    def norm(x: str, name: str) -> str:
        gamma, beta = (
            g.weight(name + ".weight", w[name + ".weight"]),
            g.weight(name + ".bias", w[name + ".bias"]),
        )
        return g.op("LayerNormalization", x, gamma, beta, axis=-1, epsilon=eps)

    def heads_first(x: str, perm: list[int]) -> str:  # (n*t, hidden) -> (n, heads, t, d) or its transpose
        return g.op("Transpose", g.op("Reshape", x, per_head), perm=perm)

    width = g.op("Slice", g.op("Shape", "ids"), g.const([1], np.int64), g.const([2], np.int64))
    positions = g.op(
        "Slice", g.weight("pos", w["embeddings.position_embeddings.weight"]), g.const([0], np.int64), width
    )
    x = g.op(
        "Add", g.op("Gather", g.weight("words", w["embeddings.word_embeddings.weight"]), "ids"), positions
    )
    x = g.op("Add", x, g.const(w["embeddings.token_type_embeddings.weight"][0]))
    x = g.op("Reshape", norm(x, "embeddings.LayerNorm"), g.const([-1, hidden], np.int64))  # (n*t, hidden)
    n_t = g.op("Shape", "mask")
    mask_bias = g.mask_bias("mask")
    n = g.op("Slice", n_t, g.const([0], np.int64), g.const([1], np.int64))
    per_head = g.op("Concat", n, g.const([-1, heads, head_dim], np.int64), axis=0)  # (n, t, heads, d)
    for layer in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{layer}."
        q = heads_first(
            g.op("Mul", dense(x, p + "attention.self.query"), g.const(1 / math.sqrt(head_dim))), [0, 2, 1, 3]
        )
        k = heads_first(dense(x, p + "attention.self.key"), [0, 2, 3, 1])
        v = heads_first(dense(x, p + "attention.self.value"), [0, 2, 1, 3])
        probs = g.op("Softmax", g.op("Add", g.op("MatMul", q, k), mask_bias), axis=-1)
        context = g.op("Transpose", g.op("MatMul", probs, v), perm=[0, 2, 1, 3])
        context = g.op("Reshape", context, g.const([-1, hidden], np.int64))
        x = norm(
            g.op("Add", dense(context, p + "attention.output.dense"), x), p + "attention.output.LayerNorm"
        )
        gelu = g.gelu(dense(x, p + "intermediate.dense"))
        x = norm(g.op("Add", dense(gelu, p + "output.dense"), x), p + "output.LayerNorm")
    tokens = g.op("Reshape", x, g.op("Concat", n_t, g.const([hidden], np.int64), axis=0))  # (n, t, hidden)
    pooled = g.mean_pool(tokens, "mask")
    length = g.op("Max", g.op("ReduceL2", pooled, g.const([-1], np.int64), keepdims=1), g.const(1e-12))
    g.op("Div", pooled, length)
    return g.finish(
        "all-MiniLM-L6-v2",
        [("ids", np.int64, ["n", "t"]), ("mask", np.float32, ["n", "t"])],
        ("vectors", hidden),
    ), g.external
