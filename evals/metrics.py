"""Pure metrics over ranked relevance lists and answers; every function is per-item or an average."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence

MARKER = re.compile(r"\[(\d+)\]")


def success_at(relevant: Sequence[bool], k: int) -> float:
    """1.0 when any relevant passage is in the top ``k`` (recall@k for a question with one answer)."""
    return 1.0 if any(relevant[:k]) else 0.0


def reciprocal_rank(relevant: Sequence[bool]) -> float:
    return next((1.0 / (i + 1) for i, r in enumerate(relevant) if r), 0.0)


def ndcg_at(gains: Sequence[float], relevant: Sequence[float], k: int = 10) -> float:
    """nDCG@k with linear gains: ``gains`` of the ranked items (a bool counts as 0/1), ``relevant`` the
    gains of every relevant item, from which the ideal ranking is built (pytrec_eval's definition)."""
    dcg = sum(float(g) / math.log2(i + 2) for i, g in enumerate(gains[:k]) if g)
    ideal = sorted((float(r) for r in relevant), reverse=True)[:k]
    idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def supports(text: str, must_contain: Iterable[Sequence[str]]) -> bool:
    """Every fact group has at least one alternative in ``text`` (case-insensitive)."""
    folded = text.casefold()
    return all(any(alt.casefold() in folded for alt in group) for group in must_contain)


def markers_resolve(answer: str, citation_numbers: Iterable[int]) -> bool:
    return {int(n) for n in MARKER.findall(answer)} <= set(citation_numbers)


def mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


def precision_recall(predicted: Sequence[bool], actual: Sequence[bool]) -> tuple[float, float]:
    tp = sum(p and a for p, a in zip(predicted, actual, strict=True))
    pp, ap = sum(predicted), sum(actual)
    return (tp / pp if pp else 1.0), (tp / ap if ap else 1.0)
