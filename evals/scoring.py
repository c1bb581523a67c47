"""Fusion and scoring for ``python -m evals.public``: the systems measured, kb's z-score fusion over a run's raw
signals, the metrics (nDCG@10, recall@100) and the weight grid searched on dev queries.

Fusion is ``kb.retrieve.Retriever.fused`` vectorised over queries: every signal normalised within each passage
language (kb's ``centred``), weighted per (query language, passage language) by ``kb.retrieve.signal_weight``
(``detect_lang`` on the query, the chunk's language on the passage side). A document scores its best chunk.

``kbq`` is what kbq ships: BM25 + USE + MiniLM, sentence-aware, with kb's own weights for that pair of embedders
(``kb.retrieve.default_weights``, i.e. ``PAIR_WEIGHTS``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

import kb.retrieve as kb_retrieve
from evals.signals import MODELS, Run
from kb.retrieve import DEFAULT_WEIGHTS, LEXICAL, Weights, default_weights, signal_weight

NDCG_K, RECALL_K = 10, 100


@dataclass(frozen=True)
class Shipped:
    """The configuration kbq ships, as the benchmark reproduces it."""

    chunking: str  # the unit (the product's splitter at its FAQ limit)
    lexical: str  # the lexical signal (kb's Bm25Index)
    models: tuple[str, ...]  # embedder aliases
    sentences: bool  # sentence-aware dense scores (kb.retrieve.Retriever._dense)
    weights: Weights


KBQ = Shipped(
    chunking="chunks-faq",
    lexical="bm25",
    models=tuple(MODELS),
    sentences=True,
    weights=default_weights([MODELS[m] for m in MODELS]),  # kb.retrieve.PAIR_WEIGHTS
)


# ---------------------------------------------------------------- fusion


def zscore_rows(scores: np.ndarray) -> np.ndarray:
    """The z-score of every row (one query's scores over the whole index), vectorised."""
    scores = scores.astype(np.float32, copy=False)
    mean = scores.mean(axis=1, keepdims=True)
    std = scores.std(axis=1, keepdims=True)
    out = (scores - mean) / np.where(std > 1e-9, std, 1.0)
    out[(std <= 1e-9)[:, 0]] = 0.0
    return out


def normalise(scores: np.ndarray, langs: np.ndarray) -> np.ndarray:
    """Each row normalised as Retriever.fused normalises a signal: kb's own ``centred`` over the passage
    languages when the index mixes languages; over one language that is the plain z-score, vectorised."""
    if len(np.unique(langs)) <= 1:
        return zscore_rows(scores)
    groups = [langs == lang for lang in kb_retrieve.LANGS]
    return np.vstack([kb_retrieve.centred(row.astype(np.float32), groups) for row in scores])


def signal_key(name: str) -> str:
    """The key kb.retrieve.signal_weight takes for a signal: LEXICAL for every BM25 variant, the model alias
    for an embedder (``use-sent`` weighs as ``use``)."""
    return LEXICAL if name.startswith("bm25") else name.removesuffix("-sent")


def fuse(
    run: Run, signals: Sequence[str], weights: Weights, z: Mapping[str, np.ndarray] | None = None
) -> np.ndarray:
    """Chunk scores: the weighted sum of z-normalised signals, weights by (query lang, passage lang)."""
    total = np.zeros((len(run.qids), len(run.chunked.langs)), dtype=np.float32)
    langs = run.chunked.langs
    for name in signals:
        zs = z[name] if z is not None else normalise(run.raw[name], langs)
        for qlang in np.unique(run.qlangs):
            rows = run.qlangs == qlang
            per_chunk = np.where(
                langs == "zh",
                signal_weight(weights, qlang, "zh", signal_key(name)),
                signal_weight(weights, qlang, "en", signal_key(name)),
            ).astype(np.float32)
            if np.any(per_chunk):
                total[rows] += zs[rows] * per_chunk
    return total


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
    dcg = sum(rels.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted((r for r in rels.values() if r > 0), reverse=True)[:k]
    idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


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
    previous default (BM25 + USE with kb.retrieve.DEFAULT_WEIGHTS). ``kbq`` itself is ``kbq_signals``."""
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
        out["kbq-use-only"] = (["bm25", use], DEFAULT_WEIGHTS)
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
