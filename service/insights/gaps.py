"""Unanswered questions grouped by meaning: the next FAQ entries to write, most asked first.

Exact repeats (ignoring case, spacing and end punctuation) merge first; then each phrasing, most asked
first, joins the group whose first phrasing it is most similar to, if that similarity reaches ``MERGE_AT``,
else starts a group. Similarity is the cosine of the product's own embedders: a multilingual one (USE) for
every pair, so "how many GPUs does a p3.16xlarge have?" and "p3.16xlarge 有几块 GPU?" merge; an English-only
one (MiniLM) only between two English questions, where it is the better judge. The highest trusted cosine
counts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from kb.embed import Embedder

# Chosen on 19 hand-written pairs of paraphrases and translations of out-of-scope questions, and on every
# pair of golden-set questions: at 0.80, 14 of the 19 pairs merge and, among the golden questions, only
# translations and near-identical questions do ("c5.18xlarge 按需每小时多少钱" with "c5.24xlarge 每小时多少钱").
# At 0.75, 15 of 19 merge but so do distinct questions ("Is AWS getting rid of Xen completely?" with "Why
# did AWS pick Xen back in 2006?"); a missed merge shows as two rows, a wrong one hides a gap.
MERGE_AT = 0.80
MAX_EMBEDDED = 2000  # phrasings compared by embedding; rarer ones beyond this stay groups of their own
_CACHE_LIMIT = 20_000
_vectors: dict[tuple[str, str], np.ndarray] = {}  # (model id, text) -> vector, so a page reload is cheap


@dataclass(frozen=True)
class Phrasing:
    question: str
    asked: int
    lang: str
    last_asked: str


@dataclass(frozen=True)
class Gap:
    question: str  # the most asked phrasing
    asked: int
    phrasings: tuple[Phrasing, ...]
    langs: tuple[str, ...]
    last_asked: str

    def to_dict(self) -> dict[str, object]:
        return {
            "question": self.question,
            "asked": self.asked,
            "langs": list(self.langs),
            "last_asked": self.last_asked,
            "phrasings": [{"question": p.question, "asked": p.asked} for p in self.phrasings],
        }


T = TypeVar("T", Phrasing, Gap)


def normalise(question: str) -> str:
    return " ".join(question.casefold().split()).rstrip("?？!！.。 ")


def phrasings(rows: Iterable[tuple[str, str, str]]) -> list[Phrasing]:
    """(question, lang, created) rows to distinct phrasings, most asked (then most recent) first."""
    seen: dict[str, list] = {}
    for question, lang, created in rows:
        entry = seen.setdefault(normalise(question), [question.strip(), 0, lang, created])
        entry[1] += 1
        entry[3] = max(entry[3], created)
    return most_asked([Phrasing(q, n, lang, last) for q, n, lang, last in seen.values()])


def most_asked(items: list[T]) -> list[T]:
    """Most asked first; among equals, the most recently asked."""
    by_recency = sorted(items, key=lambda x: x.last_asked, reverse=True)
    return sorted(by_recency, key=lambda x: x.asked, reverse=True)


def _embed(embedder: Embedder, texts: Sequence[str]) -> np.ndarray:
    missing = [t for t in dict.fromkeys(texts) if (embedder.model_id, t) not in _vectors]
    if missing:
        if len(_vectors) + len(missing) > _CACHE_LIMIT:
            _vectors.clear()
        for text, vector in zip(missing, embedder.embed_queries(missing), strict=True):
            _vectors[(embedder.model_id, text)] = np.asarray(vector, dtype=np.float32)
    return np.vstack([_vectors[(embedder.model_id, t)] for t in texts])


def similarity(items: Sequence[Phrasing], embedders: Sequence[Embedder]) -> np.ndarray:
    """The highest cosine among the embedders trusted for each pair (see the module docstring)."""
    texts = [p.question for p in items]
    english = np.array([p.lang == "en" for p in items])
    both_english = english[:, None] & english[None, :]
    best = np.full((len(items), len(items)), -1.0, dtype=np.float32)
    for embedder in embedders:
        vectors = _embed(embedder, texts)
        cosine = vectors @ vectors.T
        trusted = cosine if embedder.multilingual else np.where(both_english, cosine, -1.0)
        best = np.maximum(best, trusted)
    return best


def group(items: Sequence[Phrasing], embedders: Sequence[Embedder]) -> list[list[Phrasing]]:
    """Each phrasing joins the most similar group leader at or above MERGE_AT, or leads a new group."""
    compared = list(items[:MAX_EMBEDDED])
    sims = similarity(compared, embedders) if compared and embedders else np.zeros((0, 0))
    groups: list[list[int]] = []
    for i in range(len(compared)):
        leaders = [g[0] for g in groups]
        scores = sims[i, leaders] if leaders else np.zeros(0)
        if len(scores) and scores.max() >= MERGE_AT:
            groups[int(scores.argmax())].append(i)
        else:
            groups.append([i])
    grouped = [[compared[i] for i in g] for g in groups]
    return grouped + [[p] for p in items[MAX_EMBEDDED:]]


def find_gaps(rows: Iterable[tuple[str, str, str]], embedders: Sequence[Embedder]) -> list[Gap]:
    """Unanswered (question, lang, created) rows as groups of one meaning, most asked first."""
    gaps = []
    for members in group(phrasings(rows), embedders):
        langs = tuple(sorted({p.lang for p in members}))
        last = max(p.last_asked for p in members)
        asked = sum(p.asked for p in members)
        gaps.append(Gap(members[0].question, asked, tuple(members), langs, last))
    return most_asked(gaps)
