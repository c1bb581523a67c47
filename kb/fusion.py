"""Hybrid fusion as pure functions over arrays, batched over questions (rows) and passages (columns).

One global fusion cannot serve both languages: a cross-lingual cosine is systematically lower than a
same-language one, so English passages would always beat the Chinese passage that holds the answer.
Each signal is centred separately over the Chinese and the English passages and scaled by its common
spread, then the signals are summed with weights that depend on the question's and the passage's
language (kb.tuning.FUSION). ``kb.retrieve.Retriever`` fuses one question; ``evals.public`` whole
benchmark query sets, through these same functions.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from kb.embed import SHORT_NAMES
from kb.tuning import DENSE, FUSION, LEXICAL, Fusion, Weights

LANGS = ("en", "zh")
MODEL_ALIASES = {model_id: alias for alias, model_id in SHORT_NAMES.items()}


def default_weights(model_ids: Collection[str], fusion: Fusion = FUSION) -> Weights:
    """The per-pair weights for exactly USE + MiniLM, else one weight for every dense signal."""
    aliases = {MODEL_ALIASES.get(m, m) for m in model_ids}
    return fusion.pair_weights if aliases == {"use", "minilm"} else fusion.default_weights


def signal_weight(weights: Weights, query_lang: str, passage_lang: str, signal: str) -> float:
    """The weight of ``signal`` (LEXICAL, an embedder alias or model id) for one language pair."""
    table = weights.get((query_lang, passage_lang)) or weights[("en", "en")]
    key = MODEL_ALIASES.get(signal, signal)
    if key == LEXICAL:
        return float(table.get(LEXICAL, 0.0))
    return float(table.get(key, table.get(DENSE, 0.0)))


@dataclass(frozen=True)
class Population:
    """A signal's centre per passage language and its spread, over the passages that stand for the corpus
    (``normalise`` of a large store's candidates, which are the best passages, not typical ones)."""

    centre: dict[str, float]
    spread: float

    @classmethod
    def of(cls, scores: np.ndarray, passage_langs: np.ndarray) -> Population:
        """From one question's scores over a sample of passages (float32, as ``normalise`` computes them)."""
        scores = scores.astype(np.float32, copy=False)
        centre = {
            lang: float(scores[passage_langs == lang].mean())
            for lang in LANGS
            if (passage_langs == lang).any()
        }
        return cls(centre, float(scores.std()) if len(scores) else 0.0)


def normalise(
    scores: np.ndarray, passage_langs: np.ndarray, population: Population | None = None
) -> np.ndarray:
    """Each row centred within each passage language and divided by the row's spread over all passages.

    The common spread keeps a group's best passage from being stretched into a strong match just because
    its group is narrow: scaled within each language, an English passage at cosine 0.73 beat a Chinese
    one at 0.75 for a Chinese question (golden set, recall@5 0.946 -> 0.962). Over a one-language index
    this is the plain z-score.

    ``population``: the centres and spread to use (one question, a large store), instead of these passages'.
    """
    rows = np.atleast_2d(scores).astype(np.float32, copy=False)
    if population is not None:
        out = np.zeros_like(rows)
        if population.spread > 1e-9:
            for lang in LANGS:
                cols = passage_langs == lang
                centre = population.centre.get(lang, float(rows[:, cols].mean()) if cols.any() else 0.0)
                out[:, cols] = (rows[:, cols] - np.float32(centre)) / np.float32(population.spread)
        return out.reshape(np.shape(scores))
    out = np.zeros_like(rows)
    spread = rows.std(axis=1, keepdims=True)
    flat = spread[:, 0] <= 1e-9
    safe = np.where(flat[:, None], 1.0, spread)
    for lang in LANGS:
        cols = passage_langs == lang
        if cols.any():
            part = rows[:, cols]
            out[:, cols] = (part - part.mean(axis=1, keepdims=True)) / safe
    out[flat] = 0.0
    return out.reshape(np.shape(scores))


def weighted_sum(
    normalised: Sequence[tuple[str, np.ndarray]],
    query_langs: Sequence[str],
    passage_langs: np.ndarray,
    weights: Weights,
    prior: np.ndarray | None = None,
) -> np.ndarray:
    """Σ weight(question lang, passage lang, signal) × normalised signal, plus a per-passage prior.
    ``normalised`` pairs each signal's weight key with its (questions × passages) scores."""
    total = np.zeros((len(query_langs), len(passage_langs)), dtype=np.float32)
    if prior is not None:
        total += prior.astype(np.float32)
    qlangs = np.asarray(query_langs)
    for key, z in normalised:
        for qlang in np.unique(qlangs):
            rows = qlangs == qlang
            per_passage = passage_weights(weights, str(qlang), passage_langs, key)
            if per_passage.any():
                total[rows] += np.atleast_2d(z)[rows] * per_passage
    return total


def passage_weights(weights: Weights, query_lang: str, passage_langs: np.ndarray, key: str) -> np.ndarray:
    """The weight of signal ``key`` for each passage, given the question's language."""
    per_passage = np.zeros(len(passage_langs), dtype=np.float32)
    for plang in LANGS:
        per_passage[passage_langs == plang] = signal_weight(weights, query_lang, plang, key)
    return per_passage


def fuse_one(
    raw: Sequence[tuple[str, np.ndarray]],
    passage_langs: np.ndarray,
    weights_of: Callable[[str], np.ndarray],
    prior: np.ndarray | None = None,
    populations: Mapping[str, Population] | None = None,
) -> np.ndarray:
    """``fuse`` for one question, with its per-passage weights (``passage_weights``) looked up by
    ``weights_of(key)``, so a caller can compute them once per question language. The same float
    operations in the same order: the scores equal ``fuse``'s bit for bit."""
    total = np.zeros(len(passage_langs), dtype=np.float32)
    if prior is not None:
        total += prior.astype(np.float32)
    for key, scores in raw:
        per_passage = weights_of(key)
        if per_passage.any():
            population = populations.get(key) if populations else None
            total += normalise(scores, passage_langs, population) * per_passage
    return total


def fuse(
    raw: Sequence[tuple[str, np.ndarray]],
    query_langs: Sequence[str],
    passage_langs: np.ndarray,
    weights: Weights,
    prior: np.ndarray | None = None,
) -> np.ndarray:
    """Fused passage scores (questions × passages) from raw signals keyed by their weight key."""
    normalised = [(key, normalise(scores, passage_langs)) for key, scores in raw]
    return weighted_sum(normalised, query_langs, passage_langs, weights, prior)


def official_prior(official: np.ndarray, prior: float = FUSION.official_prior) -> np.ndarray:
    """``prior`` on FAQ and article passages, 0 on community ones."""
    return np.where(official, prior, 0.0).astype(np.float32)


def with_best_sentence(
    chunk_scores: np.ndarray,
    sentence_rows: np.ndarray,
    sentence_scores: np.ndarray,
    share: float = FUSION.chunk_share,
) -> np.ndarray:
    """A passage's dense score mixes its own cosine with its best sentence's (or its own when higher):
    a FAQ question or a key sentence matches without the rest of the chunk diluting it. Rows are
    questions; ``sentence_rows`` gives each sentence's passage column, in passage order."""
    chunk = np.atleast_2d(chunk_scores)
    best = chunk.copy()
    if len(sentence_rows):
        cols, group_max = best_per_passage(sentence_rows, np.atleast_2d(sentence_scores))
        best[:, cols] = np.maximum(best[:, cols], group_max)
    return (share * chunk + (1.0 - share) * best).reshape(np.shape(chunk_scores))


def best_per_passage(sentence_rows: np.ndarray, sentence_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The passages that have sentences, and each one's best sentence score (over the last axis).
    ``sentence_rows``: each sentence's passage, non-empty and in passage order."""
    starts = np.flatnonzero(np.r_[True, sentence_rows[1:] != sentence_rows[:-1]])
    return sentence_rows[starts], np.maximum.reduceat(sentence_scores, starts, axis=-1)


def lift_by_relevance(
    fused: np.ndarray,
    rows: np.ndarray,
    sentence_rows: np.ndarray,
    relevance: np.ndarray,
    weight: float,
) -> np.ndarray:
    """One question's fused passage scores plus ``weight`` fused spreads per spread of the passages' best
    relevance-model sentence cosine (``kb.retrieve.Retriever.with_relevance``), centred over the passages:
    the model fitted to this material's answers (kb.calibration.Adapter) reorders the passages whose
    sentences are scored, which the retrieval embedders rank from words and topic. ``rows``: the passages,
    ascending; ``sentence_rows``: each sentence's passage, aligned with ``relevance``. A passage without
    sentences counts as the least relevant."""
    if weight == 0.0 or not len(sentence_rows) or len(fused) < 2:
        return fused
    cols, group_max = best_per_passage(
        np.searchsorted(rows, sentence_rows), relevance.astype(np.float32, copy=False)
    )
    best = np.full(len(rows), group_max.min(), dtype=np.float32)
    best[cols] = group_max
    spread = float(best.std())
    if spread <= 1e-9:
        return fused
    z = (best - best.mean()) / np.float32(spread)
    return fused + np.float32(weight * float(fused.std())) * z
