"""Extractive answers: rank the sentences of the best passages, answer with the best one and the
strongest other sentences, in the asker's language, cite each sentence exactly, verify every citation
against the document text, and abstain when the calibrated confidence is low.

Two small logistic models decide (kb/calibration.py): a sentence ranker (is this sentence the answer?)
and a confidence model (do the chosen sentences answer what the question asks?); both read the relevance
model's cosines through the calibration's adapter. Candidates and their
features: kb/candidates.py; saying them in the asker's language: kb/compose.py; citing them: kb/citations.py.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection

import numpy as np

from kb.calibration import SENTENCE_FEATURES, AnswerFeatures, Calibration, SentenceFeatures
from kb.candidates import Candidate, Draft, Featuriser, SentenceView, standout, with_corrections
from kb.citations import cite, verify
from kb.compose import Realiser, join, label
from kb.config import MAX_QUESTION_CHARS
from kb.question import asking, named_langs, named_terms
from kb.retrieve import Retriever
from kb.text import tokenize
from kb.tuning import ANSWERING, Answering
from kb.types import OFFICIAL_KINDS, Answer, Citation, quotable

log = logging.getLogger(__name__)

LANGS = ("en", "zh")
ABSTAIN = {
    "en": "The material does not cover this question. The nearest passages are listed for you to check; "
    "they are not an answer.",
    "zh": "资料中没有涉及这个问题。下面列出最接近的段落供你核对,它们并不是答案。",
}

__all__ = ["ABSTAIN", "Answerer", "Candidate", "Draft", "InvalidQuestion", "check_question"]


class InvalidQuestion(ValueError):
    """The question is empty or too long."""


def check_question(question: str, limit: int = MAX_QUESTION_CHARS) -> str:
    question = (question or "").strip()
    if not question:
        raise InvalidQuestion("the question is empty")
    if len(question) > limit:
        raise InvalidQuestion(f"the question is {len(question)} characters; the limit is {limit}")
    return question


class Answerer:
    def __init__(
        self,
        retriever: Retriever,
        calibration: Calibration | None = None,
        max_question_chars: int = MAX_QUESTION_CHARS,
        answering: Answering = ANSWERING,
    ) -> None:
        self.retriever = retriever
        self.answering = answering
        self.max_question_chars = max_question_chars
        # the confidence model fitted on this corpus, or the portable one on another (kb.calibration)
        self.calibration = (calibration or Calibration.load(retriever.models)).for_corpus(
            retriever.store.digests().values()
        )
        self.store = retriever.store
        self.featuriser = Featuriser(retriever, answering)
        self.realiser = Realiser(self.store, retriever.embedders, answering)
        # (calibration, its documents here, per row whether it is of one of them): ``_fitted_on``
        self._fitted_rows: tuple[Calibration, set[str], np.ndarray] | None = None

    def answer(
        self,
        question: str,
        kinds: Collection[str] | None = None,
        langs: Collection[str] | None = None,
        lang: str | None = None,
    ) -> Answer:
        return self.finish(self.draft(question, kinds, langs, lang))

    def draft(
        self,
        question: str,
        kinds: Collection[str] | None = None,
        langs: Collection[str] | None = None,
        lang: str | None = None,
        calibration: Calibration | None = None,
    ) -> Draft:
        """Retrieve and featurise candidate sentences, before the models decide; the relevance model's
        question vector through ``calibration``'s adapter (this answerer's by default). ``lang`` is the
        answer's language, by default the question's."""
        question = check_question(question, self.max_question_chars)
        model = calibration or self.calibration
        relevance_vector = self.retriever.relevance_vector(question)  # beside retrieval, on another thread
        signals = self.retriever.signals(question)
        signals = self.retriever.with_relevance(
            question, signals, relevance_vector, model.adapter, self._fitted_on(model, signals.rows)
        )
        hits = self.retriever.search(
            question,
            k=self.answering.search_k,
            kinds=kinds,
            langs=langs,
            signals=signals,
            relevance=self.answering.relevance_passages,
        )
        hits = with_corrections(self.store, hits, langs)
        # what the material states about what the question asks: a name only a corrected claim or a question
        # mentions ("Frankfurt", in "C5 is in every region, we're in Frankfurt") is not something it covers
        asked = asking(question)
        terms = set(tokenize(asked))
        unknown = sum(not self.store.stated(t) for t in terms) / len(terms) if terms else 0.0
        missing_name = float(any(not self.store.stated(name, inside=True) for name in named_terms(asked)))
        if not (signals.langs == signals.query_lang).any():
            # words are evidence only in a language the material is written in: an English question over
            # Chinese-only material uses words it never does, and says nothing by that
            unknown = missing_name = 0.0
        answer_lang = lang if lang in LANGS else signals.query_lang
        candidates = self.featuriser.candidates(question, signals, hits)
        relevance = float(signals.relevance.max()) if signals.relevance is not None else 0.0
        view = SentenceView(self.store, signals.sentences)
        return Draft(
            question,
            asked,
            answer_lang,
            hits,
            candidates,
            view,
            unknown,
            missing_name,
            relevance,
            signals.query_lang,
            standout(signals, self.answering.standout_sentences),
            model.adapter,
        )

    def _fitted_on(self, model: Calibration, rows: np.ndarray) -> np.ndarray | None:
        """Which of ``rows`` are of documents ``model`` was fitted on, as they were then (by content); None
        when it records none. Its adapter corrects cosines only there: it learned this material's answers,
        and a passage added or changed since would be pulled away from questions it answers (a new FAQ
        entry's own question: relevance 0.96 without the adapter, 0.80 with it, and an abstention)."""
        if model.adapter is None or not model.provenance.get("documents"):
            return None
        cached = self._fitted_rows
        if cached is None or cached[0] is not model:  # one calibration serves; the harness tries others
            fitted = set(model.provenance["documents"])
            known = {doc_id for doc_id, digest in self.store.digests().items() if digest in fitted}
            cached = (model, known, np.zeros(0, np.int8))
        _, known, seen = cached  # seen: per row, 1 of a fitted document, 0 not, -1 not read yet
        if len(rows) and int(rows.max()) >= len(seen):
            seen = np.concatenate([seen, np.full(int(rows.max()) + 1 - len(seen), -1, np.int8)])
        unread = rows[seen[rows] < 0]
        for row in unread.tolist():
            seen[row] = self.store.chunk(row).doc_id in known
        self._fitted_rows = (model, known, seen)
        return seen[rows] > 0

    def finish(self, draft: Draft, calibration: Calibration | None = None) -> Answer:
        """Choose sentences, decide to answer or abstain, and build verified citations."""
        model = calibration or self.calibration
        chosen, features = self.choose(draft, model)
        confidence = round(model.confidence(features), 4) if chosen and features else 0.0
        answer_id = uuid.uuid4().hex
        if not chosen or confidence < model.threshold:
            return self._abstain(answer_id, draft, confidence)
        citations: list[Citation] = []
        parts: list[str] = []
        for cand in chosen:
            citation = cite(self.store, len(citations) + 1, cand, draft.hits)
            if not verify(citation, self.store.document(citation.doc_id)):
                log.warning(
                    "dropped a citation that failed verification: %s %d-%d",
                    citation.doc_id,
                    citation.start,
                    citation.end,
                )
                continue
            citations.append(citation)
            prefix = label(draft.lang, citation.source, cand.lang)
            parts.append(f"{prefix}{citation.quote}{'' if cand.lang == 'zh' else ' '}[{citation.n}]")
        if not citations:
            return self._abstain(answer_id, draft, 0.0)
        joiner = "" if all(c.lang == "zh" for c in chosen) else " "
        text = join(parts, joiner)
        return Answer(answer_id, draft.question, text, False, confidence, tuple(citations), draft.lang)

    # ------------------------------------------------------------ choice

    def choose(self, draft: Draft, model: Calibration) -> tuple[list[Candidate], AnswerFeatures | None]:
        """The best sentence and the strongest non-redundant others (each next one weighed against its
        closeness to those chosen: ``_next``), said in the answer's language, plus the features the confidence
        model reads.

        Community reports answer only what official sources do not: when the best sentence is official,
        no comment joins it, and an official sentence takes the place of every chosen report it says (before
        and after translation). A sentence in the other language stays only when it has no counterpart in the
        answer's language (and, with ``other_lang_lead_only``, is the best one), labelled with its source.
        Official sentences come first; within each kind the best sentence's passage leads, then the others in
        retrieval order, each in document order.
        """
        if not draft.candidates:
            return [], None
        scored = sorted(((model.ranker(c.features), c) for c in draft.candidates), key=lambda x: -x[0])
        best_score, best = scored[0]
        chosen = [best]
        rest = [(s, c) for s, c in scored[1:] if s >= self.answering.neighbour_share * best_score]
        while rest and len(chosen) < self.answering.max_sentences:
            score, cand = rest.pop(self._next(draft.view, rest, chosen, best_score))
            if best.official and not cand.official and score < self.answering.community_share * best_score:
                continue  # community reports only for what official sources do not cover
            stated = frozenset().union(*(c.figures for c in chosen))
            same = next((i for i, c in enumerate(chosen) if self._similar(draft.view, cand, c, stated)), None)
            if same is None and cand.official:
                same = next((i for i, c in enumerate(chosen) if self._says_less(draft.view, c, cand)), None)
            if same is None:
                chosen.append(cand)
            elif cand.official and not chosen[same].official:
                # an official source says what community reports said: quote it, once, in the first one's place
                chosen = [
                    cand if i == same else c
                    for i, c in enumerate(chosen)
                    if i == same or not self._covers(draft.view, cand, c)
                ]
        said = self.realiser.realise(
            chosen, draft.candidates, draft.lang, draft.view, named_langs(draft.question)
        )
        # a translation may be a community report that an official sentence of the answer says ("没有。发布的
        # 时候只有…三个区" said as "C5 is only in three regions right now"): it goes, as it would have above
        said = [c for c in said if not any(self._covers(draft.view, o, c) for o in said)]
        if self.answering.other_lang_lead_only and any(c.lang == draft.lang for c in said):
            said = [c for i, c in enumerate(said) if c.lang == draft.lang or i == 0]
        rank = {h.row: h.rank for h in draft.hits}
        lead = said[0].row
        order = sorted(said, key=lambda c: (not c.official, c.row != lead, rank.get(c.row, 99), c.start))
        return order, self.featuriser.answer_features(draft, order, best_score, said[0])

    def _next(
        self,
        view: SentenceView,
        rest: list[tuple[float, Candidate]],
        chosen: list[Candidate],
        best_score: float,
    ) -> int:
        """Which of ``rest`` joins ``chosen`` next: the one whose score, less ``diversity`` best scores per unit
        of its cosine to the closest sentence chosen, is highest (maximal marginal relevance, Carbonell and
        Goldstein, 1998).
        Sentences on the topic of the best one crowded out the second fact of two-part questions ("is the
        NVMe order fixed, can fstab name /dev/nvme1n1?": four sentences on mounting by UUID, and the PCI
        enumeration sentence sixth).
        Tried and left out: no penalty for closeness to a chosen sentence of the same passage (its sentences
        do not restate each other, ``_similar``). 5-fold on the 2,930 tune questions with the adapter fixed,
        support + min(abstention P, R) 1.758 -> 1.760; refit on the 3,090, the 2006 history's neighbours in
        its passage crowded the main reason out of "AWS 为啥要从 Xen 换到 KVM?"."""
        penalty = self.answering.diversity * best_score
        if not penalty:
            return 0

        def worth(i: int) -> float:
            score, cand = rest[i]
            return score - penalty * max(self.realiser.cosine(view, cand.sid, c.sid) for c in chosen)

        return max(range(len(rest)), key=worth)

    def _covers(self, view: SentenceView, official: Candidate, report: Candidate) -> bool:
        """An official sentence says what a community report says: it restates it, or the report says less."""
        return (
            official.official
            and not report.official
            and (self._similar(view, official, report) or self._says_less(view, report, official))
        )

    def _says_less(self, view: SentenceView, report: Candidate, official: Candidate) -> bool:
        """A community report that an official sentence says, and more: no longer, and no figure it lacks."""
        return (
            not report.official
            and report.end - report.start <= official.end - official.start
            and self._similar(view, report, official)
        )

    def _similar(
        self, view: SentenceView, a: Candidate, b: Candidate, said: frozenset[str] = frozenset()
    ) -> bool:
        """Overlapping spans, or two sentences from different passages that say the same thing.

        Within one passage only overlap counts: an FAQ answer or a comment does not restate itself,
        and its neighbouring sentences share a topic, so their vectors are close while each adds a
        fact ("set nvme_core.io_timeout" and "the maximum is 4294967295, or 255 before 4.15").
        Across languages only multilingual vectors mean anything. A sentence ``a`` that states a figure ``b``
        does not is another fact on the same topic ("at most 72 vCPUs and 144 GiB" beside "2 GiB per
        vCPU"), however close their vectors; one that only drops a figure restates it (a comment's "only
        three regions" beside the FAQ's "at launch in November 2017, only three regions"). A figure the
        answer states already (``said``) is not another fact: "C5 在 2017 年 11 月发布时可以按 On-Demand…购买" beside
        "C5 发布时可以按 On-Demand…购买" says again what an answer that dates the launch says (5-fold on the 2,770
        tune questions with the adapter fixed: 60 answers lost a restatement, one more is supported, support +
        min(abstention P, R) 1.764 -> 1.765)."""
        if a.row == b.row:
            return not (a.end <= b.start or b.end <= a.start)
        if a.figures - b.figures - said:
            return False
        if a.lang != b.lang:
            return self.realiser.cosine(view, a.sid, b.sid) >= self.answering.counterpart
        return any(
            float(view.vector(m, a.sid) @ view.vector(m, b.sid)) > self.answering.redundant
            for m in self.retriever.embedders
        )

    # ------------------------------------------------------------ output

    def _abstain(self, answer_id: str, draft: Draft, confidence: float) -> Answer:
        """Say the material does not cover it; list the nearest passages apart from the answer."""
        citations: list[Citation] = []
        nearest = [h for h in draft.hits if quotable(h.chunk)][: self.answering.nearest_on_abstain]
        for hit in nearest:
            sids = draft.view.of_row(hit.row)
            if not sids:
                continue
            _, start, end = draft.view.span(sids[0])
            blank = SentenceFeatures(*[0.0] * len(SENTENCE_FEATURES))
            official = hit.chunk.kind in OFFICIAL_KINDS
            cand = Candidate(sids[0], hit.row, start, end, official, hit.chunk.lang, blank)
            citation = cite(self.store, len(citations) + 1, cand, draft.hits)
            if verify(citation, self.store.document(citation.doc_id)):
                citations.append(citation)
        return Answer(
            answer_id, draft.question, ABSTAIN[draft.lang], True, confidence, tuple(citations), draft.lang
        )
