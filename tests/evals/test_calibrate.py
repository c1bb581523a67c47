"""Fitting the answerer's models: what `kbq eval --calibrate` relies on, checked on small made-up data."""

from __future__ import annotations

import numpy as np

from evals.calibrate import fit_logistic, plateau_best


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
