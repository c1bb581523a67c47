"""Fitting the answerer's two models on the golden ``tune`` split, with the provenance stored beside them.

``fit_calibration`` fits the relevance model's adapter (evals.adapter) and drafts the questions again through
it, then the sentence ranker (which of a question's candidates states a must-contain fact of
a relevant passage?), then the confidence model (does the material answer this question?), then the abstention
threshold that best balances answer support with abstention precision and recall; and the three again for
another corpus, on the portable features and without the adapter, as another corpus answers (kb.calibration).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from evals.adapter import fit_adapter
from evals.golden import Item, Snapshot, relevant_chunks
from kb.calibration import (
    ANSWER_FEATURES,
    CORPUS_FEATURES,
    PORTABLE_FEATURES,
    SENTENCE_FEATURES,
    Adapter,
    Calibration,
    Logistic,
)
from kb.knowledge import KnowledgeBase
from kb.tuning import answer_digest

FOLDS = 5
L2 = 0.01  # by hand: light regularisation, the features are few and standardised
THRESHOLDS = np.linspace(0.05, 0.95, 37)  # the abstention thresholds tried, 0.025 apart
# Steps either side a threshold's score is averaged over. The best single step moved with a question or two:
# 5-fold on tune, the folds chose thresholds 0.525-0.65 (support + min(abstention P, R) 1.495); averaged over
# 0.05 either side, 0.55-0.65 (1.505); 1 step: 1.505, 3 steps: 1.505 (kbq eval --calibrate prints the
# 5-fold figures).
SMOOTHING = 2


def fit_logistic(x: np.ndarray, y: np.ndarray, names: tuple[str, ...], l2: float = L2) -> Logistic:
    """Plain L2-regularised logistic regression on standardised features, returned in raw units."""
    mu, sd = x.mean(0), x.std(0) + 1e-9
    z = (x - mu) / sd
    w, b = np.zeros(z.shape[1]), 0.0
    for _ in range(4000):
        p = 1 / (1 + np.exp(-(z @ w + b)))
        w -= 0.2 * (z.T @ (p - y) / len(y) + l2 * w)
        b -= 0.2 * float(np.mean(p - y))
    coef = {f: round(float(w[i] / sd[i]), 5) for i, f in enumerate(names)}
    return Logistic(coef, round(float(b - np.sum(w * mu / sd)), 5), names)


def fit_ranker(
    x: np.ndarray, y: np.ndarray, groups: np.ndarray, names: tuple[str, ...], l2: float = L2
) -> Logistic:
    """The sentence ranker: which of one question's candidates states a must-contain fact.

    Its job is to order one question's candidates, so its weights are fitted listwise: the softmax over each
    question's candidates (``groups``) puts its mass on that question's facts, and questions with none among
    their candidates teach nothing about order. A pointwise fit also learns what makes one question's
    candidates likelier than another's (a question whose passages all match well), which the answerer never
    needs. ``kbq eval --calibrate``, 5-fold on the 430-question tune split: support 0.752 -> 0.748, abstention
    precision / recall 0.707 / 0.580 -> 0.678 / 0.610 (support + min(P, R) 1.332 -> 1.358); the portable
    confidence model's 0.727, 0.358 / 0.190 -> 0.733, 0.446 / 0.290. (A feature for the sentence being in the
    answer's language, which the pointwise fit weighed negatively, stayed out: 1.344 -> 1.334 beside this.)
    The order is then scaled and shifted pointwise into a probability, since the answerer compares scores as
    shares of the best one and the confidence model reads the best."""
    mu, sd = x.mean(0), x.std(0) + 1e-9
    z = (x - mu) / sd
    _, group = np.unique(groups, return_inverse=True)
    taught = np.bincount(group, weights=y)[group] > 0  # the candidates of questions with a fact among them
    _, g = np.unique(group[taught], return_inverse=True)
    zt, yt, n = z[taught], y[taught], int(g.max()) + 1 if taught.any() else 0
    w = np.zeros(z.shape[1])
    for _ in range(3000 if n else 0):
        s = zt @ w
        e = np.exp(s - s.max())
        every, facts = np.bincount(g, weights=e, minlength=n), np.bincount(g, weights=e * yt, minlength=n)
        w -= 0.5 * (zt.T @ (e / every[g] - e * yt / facts[g]) / n + l2 * w)
    scale = fit_logistic((z @ w)[:, None], y, ("order",), l2=0.0)  # the order into a probability
    a = scale.coef["order"]
    coef = {f: round(float(a * w[i] / sd[i]), 5) for i, f in enumerate(names)}
    return Logistic(coef, round(float(scale.bias - a * np.sum(w * mu / sd)), 5), names)


def fit_on(x: np.ndarray, y: np.ndarray, names: tuple[str, ...], keep: tuple[str, ...]) -> Logistic:
    """``fit_logistic`` on the features ``keep`` only; the others weigh 0."""
    columns = [names.index(k) for k in keep]
    fitted = fit_logistic(x[:, columns], y, keep)
    return Logistic({n: fitted.coef.get(n, 0.0) for n in names}, fitted.bias, names)


def fit_calibration(results: Sequence, kb: KnowledgeBase, score: Callable[[Sequence], float]) -> Calibration:
    """The confidence model learns answerability rather than "was this answer supported": an answerable
    question answered from the wrong passage is a ranking error, and teaching the model to abstain on it
    would only make it abstain on answerable questions. ``score`` rates the results of a threshold."""
    from evals.runner import refinish  # the runner imports this module

    corpus = Snapshot.of(kb.store)
    # drafted as another corpus drafts them, with no adapter: the relevance cosines reorder the passages read
    # (kb.fusion.lift_by_relevance), so drafts through the shipped adapter, fitted on every tune question,
    # would hand a fold's adapter candidates chosen with its held-out questions seen
    plain = refinish(kb, results, Calibration())
    labels = _labels(plain, corpus)
    adapter = fit_adapter(kb, plain, labels)
    # the corpus models read the cosines the adapter corrects: the questions drafted again through it, and
    # labelled again, as their candidates changed with it
    adapted = refinish(kb, results, Calibration(adapter=adapter)) if adapter else plain
    adapted_labels = _labels(adapted, corpus) if adapter else labels
    ranker, confidence, threshold = fit_models(kb, adapted, adapted_labels, CORPUS_FEATURES, adapter, score)
    portable = fit_models(kb, plain, labels, PORTABLE_FEATURES, None, score)
    return Calibration(ranker, confidence, threshold, portable=portable, adapter=adapter)


def _labels(results: Sequence, corpus: Snapshot) -> list[np.ndarray]:
    return [fact_labels(r, corpus) for r in results]


def fit_models(
    kb: KnowledgeBase,
    results: Sequence,
    labels: Sequence[np.ndarray],
    keep: tuple[str, ...],
    adapter: Adapter | None,
    score: Callable[[Sequence], float],
) -> tuple[Logistic, Logistic, float]:
    """The ranker, the confidence model on the features ``keep`` and its threshold, on ``results`` drafted
    through ``adapter``."""
    rows: list[tuple[float, ...]] = []
    groups: list[int] = []
    for q, r in enumerate(results):
        if r.item.answerable:
            rows.extend(cand.features.vector() for cand in r.draft.candidates)
            groups.extend([q] * len(r.draft.candidates))
    taught = np.concatenate([labels[q] for q, r in enumerate(results) if r.item.answerable] or [np.zeros(0)])
    ranker = fit_ranker(np.array(rows), taught, np.array(groups), SENTENCE_FEATURES)
    draft_model = Calibration(ranker, Calibration().confidence, 0.0, adapter=adapter)
    x = np.zeros((len(results), len(ANSWER_FEATURES)))
    for i, r in enumerate(results):
        features = kb.answerer.choose(r.draft, draft_model)[1]
        if features is not None:
            x[i] = features.vector()
    y = np.array([float(r.item.answerable) for r in results])
    confidence = fit_on(x, y, ANSWER_FEATURES, keep)
    threshold = choose_threshold(kb, results, Calibration(ranker, confidence, 0.0, adapter=adapter), score)
    return ranker, confidence, round(threshold, 3)


def fact_labels(result, corpus: Snapshot) -> np.ndarray:
    """Which of a result's candidate sentences state a must-contain fact of a relevant passage (1.0); all 0
    for an unanswerable question."""
    if not result.item.answerable:
        return np.zeros(len(result.draft.candidates))
    relevant = relevant_chunks(result.item, corpus.documents, corpus.chunks)
    out = []
    for cand in result.draft.candidates:
        chunk = corpus.rows[cand.row]
        text = corpus.documents[chunk.doc_id].text[cand.start : cand.end].casefold()
        hit = any(alt.casefold() in text for group in result.item.must_contain for alt in group)
        out.append(float(hit and chunk.chunk_id in relevant))
    return np.array(out)


def choose_threshold(
    kb: KnowledgeBase, results: Sequence, models: Calibration, score: Callable[[Sequence], float]
) -> float:
    """The threshold whose neighbourhood scores best (``plateau_best`` of ``score`` at each of THRESHOLDS), so
    a lone spike that a question or two makes does not decide it. The questions are answered once, by
    ``models`` under a threshold of 0; each threshold only decides which answers stand (``at_threshold``)."""
    from evals.runner import at_threshold, refinish  # the runner imports this module

    answered = refinish(kb, results, replace(models, threshold=0.0))
    scores = [score(at_threshold(answered, float(t))) for t in THRESHOLDS]
    return float(THRESHOLDS[plateau_best(scores)])


def plateau_best(scores: Sequence[float], smoothing: int = SMOOTHING) -> int:
    """The index of the best score averaged over ``smoothing`` steps either side (the ends repeated)."""
    padded = np.pad(np.asarray(scores, float), smoothing, mode="edge")
    smoothed = np.convolve(padded, np.ones(2 * smoothing + 1) / (2 * smoothing + 1), mode="valid")
    return int(np.flatnonzero(smoothed >= smoothed.max() - 1e-9)[0])  # a tie: the lowest threshold


def cross_validated(
    results: Sequence, kb: KnowledgeBase, score: Callable[[Sequence], float], folds: int = FOLDS
) -> tuple[list, list]:
    """Every question answered under a calibration fitted without it (``folds``-fold), so the figures
    show what calibration does for questions it has not seen: with the corpus confidence model, and with
    the portable one (what another corpus gets, measured here on this one)."""
    from evals.runner import refinish

    out: list = []
    portable: list = []
    for fold in range(folds):
        held = [r for i, r in enumerate(results) if i % folds == fold]
        fitted = fit_calibration([r for i, r in enumerate(results) if i % folds != fold], kb, score)
        out.extend(refinish(kb, held, fitted))
        assert fitted.portable is not None
        portable.extend(refinish(kb, held, Calibration(*fitted.portable)))
    return out, portable


def provenance(
    items: Sequence[Item], cv: dict[str, float], digests: Sequence[str], portable_cv: dict[str, float]
) -> dict[str, object]:
    """Where a calibration came from: the commit, the questions, the constants, the source digests of the
    corpus's documents (kb.calibration.Calibration.for_corpus), the cross-validated figures of both models."""
    questions = hashlib.sha256("\n".join(f"{i.id}\t{i.question}" for i in items).encode()).hexdigest()[:12]
    return {
        "commit": _commit(),
        "fitted": dt.date.today().isoformat(),
        "split": sorted({i.split for i in items}),
        "questions": len(items),
        "questions_sha": questions,
        "tuning": answer_digest(),
        "cross_validated": _recorded(cv),
        "portable_cross_validated": _recorded(portable_cv),
        "documents": sorted(digests),
    }


def _recorded(metrics: dict[str, float]) -> dict[str, float]:
    """The metrics worth recording: rounded, without the question count or undefined ones."""
    return {k: round(v, 4) for k, v in metrics.items() if k != "n" and not math.isnan(v)}


def _commit() -> str:
    """The commit the calibration was fitted at, with ``+changes`` when tracked files differ from it."""
    head, changes = (
        _git("rev-parse", "--short", "HEAD"),
        _git("status", "--porcelain", "--untracked-files=no"),
    )
    if head is None:
        return "unknown"
    return head + ("+changes" if changes else "")


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None
