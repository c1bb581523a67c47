"""Every index backend passes the same build/score/save/load contract."""

from __future__ import annotations

import numpy as np
import pytest

from kb.dense import DenseIndex
from kb.lexical import Bm25Index

TEXTS = [
    "C5 regions: US East, US West (Oregon), EU (Ireland).",
    "NVMe devices appear as /dev/nvme0n1.",
    "现在已经推出C5的区域有三个。",
    "ENA is required for c5.large.",
]


def _vectors():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(len(TEXTS), 8)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


BACKENDS = {
    "dense": (
        lambda: DenseIndex.build(_vectors()),
        lambda: _vectors()[1],
        DenseIndex.save,
        lambda p: DenseIndex.load(p / "d.faiss"),
        "d.faiss",
    ),
    "lexical": (lambda: Bm25Index.build(TEXTS), lambda: "nvme devices", Bm25Index.save, Bm25Index.load, ""),
}


@pytest.mark.parametrize("name", BACKENDS)
def test_scores_one_per_row_best_row_first_and_roundtrip(name, tmp_path):
    build, query, save, load, filename = BACKENDS[name]
    index = build()
    scores = index.scores(query())
    assert scores.shape == (len(TEXTS),)
    assert int(np.argmax(scores)) == 1
    save(index, tmp_path / filename if filename else tmp_path)
    again = load(tmp_path)
    np.testing.assert_allclose(again.scores(query()), scores, rtol=1e-6)


def test_lexical_matches_chinese_by_bigrams_and_scores_zero_for_unknown_terms():
    index = Bm25Index.build(TEXTS)
    assert int(np.argmax(index.scores("C5 有哪些区域"))) in (0, 2)
    assert index.scores("zzzz unknown").max() == 0
