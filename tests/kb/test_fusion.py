"""kb.fusion.lift_by_relevance: the relevance model's cosines reorder one question's passages."""

from __future__ import annotations

import numpy as np

from kb.fusion import lift_by_relevance

ROWS = np.array([3, 5, 8, 9])  # the candidate passages, ascending
SENTENCE_ROWS = np.array([3, 3, 5, 8, 8])  # passage 9 has no sentence


def test_a_passage_whose_sentence_the_relevance_model_rates_best_moves_up() -> None:
    fused = np.array([1.0, 0.9, 0.2, 0.1], np.float32)
    relevance = np.array([0.70, 0.72, 0.71, 0.70, 0.95], np.float32)
    lifted = lift_by_relevance(fused, ROWS, SENTENCE_ROWS, relevance, 1.0)
    assert int(np.argmax(lifted)) == 2  # passage 8, by its best sentence (0.95), not its mean
    assert lifted[3] == lifted.min()  # no sentence: the least relevant
    assert lifted.dtype == np.float32


def test_the_lift_is_in_fused_spreads_and_grows_with_the_weight() -> None:
    fused = np.array([1.0, 0.9, 0.2, 0.1], np.float32)
    relevance = np.array([0.70, 0.72, 0.71, 0.70, 0.95], np.float32)
    small = lift_by_relevance(fused, ROWS, SENTENCE_ROWS, relevance, 0.5) - fused
    large = lift_by_relevance(fused, ROWS, SENTENCE_ROWS, relevance, 1.0) - fused
    assert np.allclose(large, 2 * small, atol=1e-6)
    tenfold = lift_by_relevance(10 * fused, ROWS, SENTENCE_ROWS, relevance, 1.0) - 10 * fused
    assert np.allclose(tenfold, 10 * large, atol=1e-5)
    assert abs(float(large.mean())) < 1e-6  # centred: it reorders, it does not raise every passage


def test_no_weight_no_sentences_or_equal_cosines_leave_the_order_alone() -> None:
    fused = np.array([1.0, 0.9, 0.2, 0.1], np.float32)
    relevance = np.array([0.70, 0.72, 0.71, 0.70, 0.95], np.float32)
    assert lift_by_relevance(fused, ROWS, SENTENCE_ROWS, relevance, 0.0) is fused
    assert lift_by_relevance(fused, ROWS, SENTENCE_ROWS[:0], relevance[:0], 1.0) is fused
    three = fused[:3]  # every passage with sentences, all rated alike
    assert lift_by_relevance(three, ROWS[:3], SENTENCE_ROWS, np.full(5, 0.8, np.float32), 1.0) is three
