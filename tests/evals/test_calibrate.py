"""Fitting the answerer's models: what `kbq eval --calibrate` relies on, checked on small made-up data and,
for choosing a threshold, on the golden set."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from evals.calibrate import fit_logistic, fit_ranker, plateau_best
from evals.golden import load_golden
from evals.runner import at_threshold, refinish, run
from kb.calibration import Adapter


def test_the_threshold_sits_on_a_plateau_not_on_a_lone_spike():
    scores = [1.0, 1.0, 1.6, 1.0, 1.0, 1.3, 1.4, 1.4, 1.4, 1.3, 1.0]
    assert int(np.argmax(scores)) == 2  # the single best step: one question's luck
    assert plateau_best(scores, smoothing=2) == 7
    assert plateau_best(scores, smoothing=0) == 2


def test_the_ends_count_as_repeated_so_a_plateau_at_the_edge_wins():
    assert plateau_best([1.5, 1.5, 1.5, 1.0, 1.0, 1.2], smoothing=2) == 0


def test_a_tie_goes_to_the_lowest_threshold():
    scores = [1.0, 1.4, 1.4, 1.4, 1.0, 1.0, 1.4, 1.4, 1.4, 1.0]
    assert plateau_best(scores, smoothing=1) == 2


def test_a_fitted_logistic_separates_what_it_was_fitted_on():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 2))
    y = (x[:, 0] - 0.5 * x[:, 1] > 0).astype(float)
    model = fit_logistic(x, y, ("a", "b"))
    assert model.coef["a"] > 0 > model.coef["b"]


def test_the_ranker_learns_what_orders_a_questions_candidates_not_what_sets_questions_apart():
    """Feature ``a`` orders each question's candidates: the fact is its best one. Feature ``b`` only says
    which questions have facts among their candidates (they all run high), which a pointwise fit weighs and
    a ranker must not: within a question, ``b`` is noise."""
    rng = np.random.default_rng(0)
    rows, labels, groups = [], [], []
    for q in range(200):
        answerable = q % 2 == 0
        level = 1.0 if answerable else -1.0
        a = rng.normal(size=6)
        fact = int(np.argmax(a))
        for i in range(6):
            rows.append((a[i], level + 0.3 * rng.normal()))
            labels.append(float(answerable and i == fact))
            groups.append(q)
    x, y, g = np.array(rows), np.array(labels), np.array(groups)
    pointwise = fit_logistic(x, y, ("a", "b"))
    ranker = fit_ranker(x, y, g, ("a", "b"))
    assert pointwise.coef["b"] > 1.0  # a pointwise fit leans on what sets questions apart
    assert abs(ranker.coef["b"]) < 0.2 * ranker.coef["a"]
    scores = 1 / (1 + np.exp(-(ranker.bias + x @ [ranker.coef["a"], ranker.coef["b"]])))
    firsts = [int(np.argmax(scores[g == q])) == int(np.argmax(y[g == q])) for q in range(0, 200, 2)]
    assert np.mean(firsts) > 0.95
    # still a probability of being a fact: about as many facts expected as there are
    assert abs(scores.sum() - y.sum()) < 0.1 * y.sum()


def test_a_threshold_decides_answered_questions_as_answering_again_under_it_does(kb):
    items = load_golden(split="tune")[::15]
    stored = kb.answerer.calibration
    answered = refinish(kb, run(kb, items), replace(stored, threshold=0.0))
    for threshold in (0.3, stored.threshold, 0.8):
        again = refinish(kb, answered, replace(stored, threshold=threshold))
        decided = at_threshold(answered, threshold)
        assert [(r.answer.abstained, r.supported, r.answer.answer) for r in decided] == [
            (r.answer.abstained, r.supported, r.answer.answer) for r in again
        ]
    assert any(r.answer.abstained for r in decided) and not all(r.answer.abstained for r in decided)


def test_answering_again_drafts_again_only_under_another_adapter(kb):
    results = run(kb, load_golden(split="tune")[:3])
    stored = kb.answerer.calibration
    same = refinish(kb, results, replace(stored, threshold=0.9))
    assert all(a.draft is b.draft for a, b in zip(results, same, strict=True))
    relevance = kb.answerer.retriever.relevance
    width = len(relevance.embed_queries(["c5"])[0]) if relevance else 1
    other = Adapter(*(np.zeros((width, 1), np.float32) for _ in range(2)))
    again = refinish(kb, results, replace(stored, adapter=other))
    assert all(
        r.draft.adapter is other and r.draft is not s.draft for r, s in zip(again, results, strict=True)
    )
    # the passages read are the new draft's (the relevance cosines reorder them), and so are their ranks
    anew = run(kb, [r.item for r in results], replace(stored, adapter=other))
    assert [r.ranked for r in again] == [r.ranked for r in anew]
