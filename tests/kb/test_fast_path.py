"""The question path's shortcuts give the same numbers as the plain computations they replace."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from kb.batch_embed import embed_documents
from kb.dense import DenseIndex, inner_products
from kb.fusion import fuse, fuse_one, passage_weights
from kb.lexical import Bm25Index
from kb.text import tokenize
from kb.tuning import FUSION, LEXICAL

RNG = np.random.default_rng(7)


def _unit(rows: int, dim: int) -> np.ndarray:
    v = RNG.normal(size=(rows, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_dense_scores_equal_a_faiss_search_bit_for_bit() -> None:
    vectors, query = _unit(300, 64), _unit(1, 64)[0]
    index = DenseIndex.build(vectors)
    sims, ids = index.index.search(query.reshape(1, -1), index.size)
    expected = np.zeros(index.size, np.float32)
    expected[ids[0]] = sims[0]
    assert np.array_equal(index.scores(query), expected)
    assert np.array_equal(inner_products(vectors, query), expected)
    assert inner_products(np.zeros((0, 64), np.float32), query).shape == (0,)
    with pytest.raises(ValueError):
        inner_products(vectors, query[:10])  # the kernel must never read past the query


def test_lexical_scores_equal_scipy_column_sums() -> None:
    texts = [
        "C5 regions US East",
        "NVMe devices /dev/nvme0n1",
        "现在已经推出C5的区域有三个。",
        "ENA c5.large c5",
    ]
    index = Bm25Index.build(texts)
    query = "C5 c5 regions 区域 nvme unknown"
    expected = np.zeros(len(texts), np.float32)
    for term, qtf in Counter(t for t in tokenize(query) if t in index.vocab).items():
        column = index.weights.getcol(index.vocab[term])
        expected[column.indices] += column.data * qtf
    assert np.array_equal(index.scores(query), expected)


@pytest.mark.parametrize("query_lang", ["en", "zh"])
def test_one_question_fusion_equals_the_batched_fusion_bit_for_bit(query_lang: str) -> None:
    langs = np.array(RNG.choice(["en", "zh"], size=200))
    raw = [(LEXICAL, RNG.gamma(1.0, 2.0, 200).astype(np.float32))] + [
        (key, RNG.normal(size=200).astype(np.float32)) for key in ("use", "minilm")
    ]
    prior = np.where(RNG.random(200) < 0.5, 0.6, 0.0).astype(np.float32)
    weights = FUSION.pair_weights
    batched = fuse(raw, [query_lang], langs, weights, prior)[0]
    one = fuse_one(raw, langs, lambda key: passage_weights(weights, query_lang, langs, key), prior)
    assert np.array_equal(one, batched)


class CountingEmbedder:
    model_id = "counting"
    dim = 3
    multilingual = True

    def __init__(self) -> None:
        self.seen: list[str] = []

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        self.seen += texts
        return np.array([[len(t), t.count("a"), 1.0] for t in texts], np.float32).reshape(-1, 3)

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        return self.embed_documents(texts)


def test_ingest_embeds_every_distinct_text_once_and_keeps_each_documents_order() -> None:
    embedder = CountingEmbedder()
    chunks = [["alpha beta", "gamma"], ["alpha beta"], []]
    sentences = [["alpha", "beta", "gamma"], ["alpha beta", "banana"], []]
    chunk_vectors, sentence_vectors, stats = embed_documents(chunks, sentences, [embedder])
    assert sorted(embedder.seen) == sorted({"alpha beta", "gamma", "alpha", "beta", "banana"})
    for per_doc, vectors in ((chunks, chunk_vectors), (sentences, sentence_vectors)):
        for texts, got in zip(per_doc, vectors, strict=True):
            assert got["counting"].shape == (len(texts), 3)
            assert got["counting"].tolist() == embedder.embed_documents(texts).tolist()
    (only,) = stats
    assert (only.chunks, only.sentences, only.reused) == (2, 3, 3)
    assert set(only.to_dict()) >= {"chunks_per_s", "sentences_per_s"}


class SentenceOnly(CountingEmbedder):
    model_id = "sentence-only"


def test_a_sentence_only_model_embeds_each_distinct_sentence_once_and_no_chunk() -> None:
    retrieval, relevance = CountingEmbedder(), SentenceOnly()
    chunks = [["alpha beta", "gamma"], ["alpha beta"], []]
    sentences = [["alpha", "beta", "gamma"], ["alpha beta", "banana", "alpha"], []]
    chunk_vectors, sentence_vectors, stats = embed_documents(
        chunks, sentences, [retrieval, relevance], sentence_only={"sentence-only"}
    )
    assert sorted(relevance.seen) == sorted({"alpha", "beta", "gamma", "alpha beta", "banana"})
    assert sorted(retrieval.seen) == sorted({"alpha beta", "gamma", "alpha", "beta", "banana"})
    assert all(set(v) == {"counting"} for v in chunk_vectors)
    for texts, got in zip(sentences, sentence_vectors, strict=True):
        assert set(got) == {"counting", "sentence-only"}
        assert got["sentence-only"].tolist() == relevance.embed_documents(texts).tolist()
    assert (stats[1].chunks, stats[1].sentences, stats[1].reused) == (0, 5, 1)
