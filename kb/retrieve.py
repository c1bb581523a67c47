"""Hybrid retrieval: BM25 and one or more dense signals, fused per question and passage language
(kb/fusion.py, weights in kb/tuning.py)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

import numpy as np

from kb.dense import inner_products
from kb.embed import Embedder
from kb.fusion import default_weights, fuse_one, official_prior, passage_weights, with_best_sentence
from kb.store import LoadedIndex
from kb.text import detect_lang
from kb.tuning import FUSION, LEXICAL, Fusion, Weights
from kb.types import OFFICIAL_KINDS, Hit


def topk(scores: np.ndarray, k: int, mask: np.ndarray | None = None) -> np.ndarray:
    """Row ids of the ``k`` highest scores (ties broken by row), restricted to ``mask``."""
    candidates = np.flatnonzero(mask) if mask is not None else np.arange(scores.size)
    if candidates.size == 0 or k <= 0:
        return candidates[:0]
    order = np.lexsort((candidates, -scores[candidates]))
    return candidates[order[:k]]


@dataclass(frozen=True)
class Signals:
    """Per-row raw scores for one query, plus every indexed sentence's cosine to the query per
    embedder, which the answerer reuses instead of computing it again."""

    query_lang: str
    raw: dict[str, np.ndarray]
    sentence_sims: dict[str, np.ndarray]


class Retriever:
    """Scores every passage for a question. Everything that does not depend on the question (the
    passage vectors as matrices, the per-language fusion weights) is prepared once, so a question
    costs its embeddings, two matrix-vector products per embedder and BM25 over its own terms."""

    def __init__(
        self,
        index: LoadedIndex,
        embedders: Mapping[str, Embedder],
        weights: Weights | None = None,
        fusion: Fusion = FUSION,
    ):
        self.index = index
        self.embedders = dict(embedders)
        self.fusion = fusion
        self.weights = weights or default_weights(self.embedders, fusion)
        self._langs = np.array([c.lang for c in index.chunks])
        self._kinds = np.array([c.kind for c in index.chunks])
        self._prior = official_prior(np.isin(self._kinds, OFFICIAL_KINDS), fusion.official_prior)
        self._passage_weights: dict[tuple[str, str], np.ndarray] = {}

    def embed(self, query: str) -> dict[str, np.ndarray]:
        """The question's vector from each embedder, computed once and shared by every stage."""
        return {model_id: e.embed_queries([query])[0] for model_id, e in self.embedders.items()}

    def dense(self, model_id: str, vector: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(passage scores, every indexed sentence's cosine) for one embedder's question vector."""
        sentences = self.index.sentences
        sims = (
            inner_products(sentences.vectors[model_id], vector)
            if len(sentences.chunk_row)
            else np.zeros(0, np.float32)
        )
        chunk = self.index.dense[model_id].scores(vector)
        return with_best_sentence(chunk, sentences.chunk_row, sims, self.fusion.chunk_share), sims

    def signals(self, query: str, vectors: Mapping[str, np.ndarray] | None = None) -> Signals:
        vectors = self.embed(query) if vectors is None else vectors
        raw = {LEXICAL: self.index.lexical.scores(query)}
        sentence_sims = {}
        for model_id in self.embedders:
            raw[model_id], sentence_sims[model_id] = self.dense(model_id, vectors[model_id])
        return Signals(detect_lang(query), raw, sentence_sims)

    def fused(self, signals: Signals) -> np.ndarray:
        lang = signals.query_lang
        return fuse_one(
            list(signals.raw.items()), self._langs, lambda key: self._weights(lang, key), self._prior
        )

    def _weights(self, query_lang: str, key: str) -> np.ndarray:
        found = self._passage_weights.get((query_lang, key))
        if found is None:  # a race computes the same array twice, harmlessly
            found = self._passage_weights[(query_lang, key)] = passage_weights(
                self.weights, query_lang, self._langs, key
            )
        return found

    def mask(self, kinds: Collection[str] | None = None, langs: Collection[str] | None = None) -> np.ndarray:
        mask = np.ones(len(self.index.chunks), dtype=bool)
        if kinds:
            mask &= np.isin(self._kinds, list(kinds))
        if langs:
            mask &= np.isin(self._langs, list(langs))
        return mask

    def search(
        self,
        query: str,
        k: int = 10,
        kinds: Collection[str] | None = None,
        langs: Collection[str] | None = None,
        signals: Signals | None = None,
    ) -> list[Hit]:
        """The ``k`` best chunks for ``query``, optionally only of some source kinds or languages."""
        signals = signals or self.signals(query)
        fused = self.fused(signals)
        primary = next(iter(self.embedders), None)
        hits = []
        for rank, row in enumerate(topk(fused, k, self.mask(kinds, langs))):
            explain = {name: float(scores[row]) for name, scores in signals.raw.items()}
            hits.append(
                Hit(
                    chunk=self.index.chunks[row],
                    score=float(fused[row]),
                    dense=explain.get(primary, 0.0) if primary else 0.0,
                    lexical=explain[LEXICAL],
                    rank=rank + 1,
                    row=int(row),
                    explain=explain,
                )
            )
        return hits
