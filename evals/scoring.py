"""Fusion and scoring for ``python -m evals.public``: the systems measured, kb's z-score fusion over a run's raw
signals, the metrics (nDCG@10, recall@100) and the weight grid searched on dev queries.

Fusion is kb's own (``kb.fusion``, which ``kb.retrieve.Retriever`` calls for one question): every signal
normalised within each passage language, weighted per (query language, passage language) (``detect_lang`` on
the query, the chunk's language on the passage side). A document scores its best chunk; benchmark passages
carry no official prior.

``kbq`` is what kbq ships: BM25 + USE + MiniLM, sentence-aware, with kb's own weights for that pair of embedders
(``kb.fusion.default_weights``, i.e. ``kb.tuning.FUSION.pair_weights``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from evals.metrics import ndcg_at
from evals.signals import MODELS, Run
from kb.fusion import default_weights, normalise, signal_weight, weighted_sum
from kb.tuning import FUSION, LEXICAL, Weights

NDCG_K, RECALL_K = 10, 100


@dataclass(frozen=True)
class Shipped:
    """The configuration kbq ships, as the benchmark reproduces it."""

    chunking: str  # the unit (the product's splitter at its FAQ limit)
    lexical: str  # the lexical signal (kb's Bm25Index)
    models: tuple[str, ...]  # embedder aliases
    sentences: bool  # sentence-aware dense scores (kb.fusion.with_best_sentence)
    weights: Weights


KBQ = Shipped(
    chunking="chunks-faq",
    lexical="bm25",
    models=tuple(MODELS),
    sentences=True,
    weights=default_weights([MODELS[m] for m in MODELS]),  # FUSION.pair_weights
)


# ---------------------------------------------------------------- fusion


def signal_key(name: str) -> str:
    """The key kb.fusion.signal_weight takes for a signal: LEXICAL for every BM25 variant, the model alias
    for an embedder (``use-sent`` weighs as ``use``)."""
    return LEXICAL if name.startswith("bm25") else name.removesuffix("-sent")


def fuse(
    run: Run, signals: Sequence[str], weights: Weights, z: Mapping[str, np.ndarray] | None = None
) -> np.ndarray:
    """Chunk scores by kb's fusion; ``z`` holds signals already normalised (the tuning grid reuses them)."""
    langs = run.chunked.langs
    normalised = [(signal_key(s), z[s] if z is not None else normalise(run.raw[s], langs)) for s in signals]
    return weighted_sum(normalised, list(run.qlangs), langs, weights)


def doc_scores(run: Run, chunk_scores: np.ndarray) -> np.ndarray:
    """A document scores the best of its chunks."""
    return np.maximum.reduceat(chunk_scores, run.chunked.doc_starts, axis=1)


def uniform(**signals: float) -> Weights:
    """The same weights for every language pair."""
    return {(q, p): dict(signals) for q in ("en", "zh") for p in ("en", "zh")}


# ---------------------------------------------------------------- metrics


def ranking(scores: np.ndarray, k: int) -> np.ndarray:
    """Top-``k`` column ids per row, best first, ties broken by column order."""
    k = min(k, scores.shape[1])
    part = (
        np.argpartition(-scores, k - 1, axis=1)[:, :k]
        if k < scores.shape[1]
        else np.tile(np.arange(scores.shape[1]), (scores.shape[0], 1))
    )
    out = np.empty_like(part)
    for i, row in enumerate(part):
        out[i] = row[np.lexsort((row, -scores[i, row]))]
    return out


def ndcg(ranked: Sequence[str], rels: Mapping[str, int], k: int = NDCG_K) -> float:
    """nDCG@k with linear gains, as pytrec_eval computes it for BEIR and MTEB."""
    return ndcg_at([rels.get(d, 0) for d in ranked], [r for r in rels.values() if r > 0], k)


def recall(ranked: Sequence[str], rels: Mapping[str, int], k: int = RECALL_K) -> float:
    relevant = {d for d, r in rels.items() if r > 0}
    return len(relevant & set(ranked[:k])) / len(relevant) if relevant else 0.0


def evaluate(run: Run, scores: np.ndarray) -> dict[str, float]:
    """Mean nDCG@10 and recall@100 over the run's queries, given document scores (queries x documents)."""
    top = ranking(scores, RECALL_K)
    ndcgs, recalls = [], []
    for i, qid in enumerate(run.qids):
        ranked = [run.doc_ids[j] for j in top[i]]
        ndcgs.append(ndcg(ranked, run.qrels[qid]))
        recalls.append(recall(ranked, run.qrels[qid]))
    return {"ndcg@10": round(float(np.mean(ndcgs)), 4), "recall@100": round(float(np.mean(recalls)), 4)}


def score_system(run: Run, signals: Sequence[str], weights: Weights) -> dict[str, float]:
    return evaluate(run, doc_scores(run, fuse(run, signals, weights)))


# ---------------------------------------------------------------- systems


def systems_for(run: Run) -> dict[str, tuple[list[str], Weights]]:
    """Every system measured on any unit: single signals, equal-weight fusions and ``kbq-use-only``, the
    previous default (BM25 + USE with kb.tuning.FUSION.default_weights). ``kbq`` itself is ``kbq_signals``."""
    have = list(run.raw)
    out: dict[str, tuple[list[str], Weights]] = {}
    for s in have:
        out[s] = ([s], uniform(**{signal_key(s): 1.0}))
    for suffix in ("", "-sent"):
        dense = [m + suffix for m in MODELS if m + suffix in have]
        for r in range(2, len(dense) + 2):
            for combo in itertools.combinations(["bm25", *dense], r):
                if all(c in have for c in combo):
                    out["+".join(combo)] = (list(combo), uniform(**{signal_key(c): 1.0 for c in combo}))
    use = "use-sent" if "use-sent" in have else "use"
    if "bm25" in have and use in have:
        out["kbq-use-only"] = (["bm25", use], FUSION.default_weights)
    return out


def kbq_signals(run: Run) -> list[str] | None:
    """The signals of the shipped configuration that this run has; one it lacks must weigh nothing for the
    run's language pairs (SciFact has no USE sentence vectors: USE weighs 0 for en → en), else None."""
    suffix = "-sent" if KBQ.sentences else ""
    wanted = [KBQ.lexical, *(m + suffix for m in KBQ.models)]
    pairs = {(str(q), str(p)) for q in np.unique(run.qlangs) for p in np.unique(run.chunked.langs)}
    for s in wanted:
        if s not in run.raw and any(signal_weight(KBQ.weights, q, p, signal_key(s)) for q, p in pairs):
            return None
    return [s for s in wanted if s in run.raw]


# ---------------------------------------------------------------- tuning


def simplex(n: int) -> list[tuple[float, ...]]:
    """Weight vectors on a 0.1 grid summing to 1 (only ratios matter within a language pair)."""
    steps = 10
    out = []
    for combo in itertools.product(range(steps + 1), repeat=n):
        if sum(combo) == steps:
            out.append(tuple(c / steps for c in combo))
    return out


def tune(
    runs: Sequence[Run], signals: Sequence[str], log: Callable[[str], None] = print
) -> list[tuple[tuple[float, ...], float, list[float]]]:
    """Mean nDCG@10 over ``runs`` (dev queries of one language pair) for every weight vector, best first."""
    zs = [{s: normalise(r.raw[s], r.chunked.langs) for s in signals} for r in runs]
    results = []
    for w in simplex(len(signals)):
        table = uniform(**{signal_key(s): v for s, v in zip(signals, w, strict=True)})
        per = [
            evaluate(r, doc_scores(r, fuse(r, signals, table, z)))["ndcg@10"]
            for r, z in zip(runs, zs, strict=True)
        ]
        results.append((w, float(np.mean(per)), per))
    results.sort(key=lambda x: -x[1])
    log(f"  best {dict(zip(signals, results[0][0], strict=True))}: {results[0][1]:.4f} {results[0][2]}")
    return results
