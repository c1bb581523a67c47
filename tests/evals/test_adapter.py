"""The relevance model's adapter: fitted on made-up vectors here; read through by the answerer in
tests/kb/test_answer.py."""

from __future__ import annotations

import numpy as np

from evals.adapter import RANK, fit_low_rank
from kb.calibration import Adapter

DIMENSIONS, TOPICS, CANDIDATES = 16, 3, 5


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def _questions(rng, n, topics, facts, restatements):
    """Questions on a topic, each with that topic's fact sentence (when it has one) among candidates that
    restate the question, which the plain cosine prefers."""
    topic = rng.integers(0, TOPICS, n)
    questions = _unit(topics[topic] + 0.3 * rng.normal(size=(n, DIMENSIONS)))
    sentences = _unit(questions[:, None, :] + restatements * rng.normal(size=(n, CANDIDATES, DIMENSIONS)))
    sentences[:, 0] = facts[topic]
    return questions, sentences


def test_the_adapter_moves_questions_toward_the_sentences_that_state_their_facts():
    rng = np.random.default_rng(0)
    topics, facts = _unit(rng.normal(size=(TOPICS, DIMENSIONS))), _unit(rng.normal(size=(TOPICS, DIMENSIONS)))
    questions, sentences = _questions(rng, 90, topics, facts, 0.6)
    present = np.ones(sentences.shape[:2], bool)
    is_fact = np.zeros_like(present)
    is_fact[:, 0] = True
    up, down = fit_low_rank(questions, sentences, present, is_fact, np.ones(len(questions), bool))
    assert up.shape == down.shape == (DIMENSIONS, RANK)

    new_questions, new_sentences = _questions(rng, 60, topics, facts, 0.6)
    plain = np.einsum("bnd,bd->bn", new_sentences, new_questions)
    adapter = Adapter(up, down)
    adapted = np.einsum("bnd,bd->bn", new_sentences, np.stack([adapter(q) for q in new_questions]))
    assert np.mean(plain.argmax(1) == 0) < 0.3  # the restatements win on the plain cosine
    assert np.mean(adapted.argmax(1) == 0) > 0.75  # questions it never saw now find their fact first


def test_an_adapter_that_learned_nothing_leaves_questions_as_they_are():
    q = _unit(np.arange(1, DIMENSIONS + 1, dtype=np.float32))
    assert np.array_equal(Adapter(np.zeros((DIMENSIONS, RANK)), np.ones((DIMENSIONS, RANK)))(q), q)
