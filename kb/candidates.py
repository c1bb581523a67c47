"""Candidate answer sentences and what the answerer's two models read about them.

A candidate is a quotable unit (a sentence, a short list or table with its lead-in, a short reply) of one of
the best retrieved passages. Thread comments that only ask, and comments whose claim a later reply corrects
(ingest/conversation.py), are never candidates: a corrected claim must not reach a reader as an answer.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace

import numpy as np

from kb.calibration import Adapter, AnswerFeatures, SentenceFeatures
from kb.fusion import signal_weight
from kb.question import mentions, named_langs, named_terms, unmet_by
from kb.retrieve import Retriever, Signals
from kb.store import SentenceRows, Store, comments
from kb.text import (
    LEAD_IN_ENDS,
    QUESTION_ENDS,
    code_terms,
    detect_lang,
    is_figure,
    language_neutral,
    tokenize,
)
from kb.tuning import ANSWERING, Answering
from kb.types import OFFICIAL_KINDS, Hit, quotable

TERM_CACHE = (
    50_000  # passage and sentence texts whose tokens are kept: a small corpus's all, a large one's hot
)

NOT_ANSWERS = (*QUESTION_ENDS, *LEAD_IN_ENDS)  # questions, and lead-ins to a list or code block


def answers(text: str, answering: Answering = ANSWERING) -> bool:
    """A unit long enough to answer with that neither asks nor only leads in to what follows it."""
    return len(text) >= answering.min_sentence_chars and not text.endswith(NOT_ANSWERS)


def with_corrections(store: Store, hits: list[Hit], langs: Collection[str] | None = None) -> list[Hit]:
    """``hits``, each retrieved comment whose claim a later reply corrects followed by those replies at its
    rank: a question that echoes a corrected claim ("C5 is half the price of C4, right?") retrieves the claim
    best, which is never quoted, and its correction may rank below the passages taken. 5-fold on the 1,010
    tune questions, misinformation probes' support 0.675 -> 0.769, all 0.738 -> 0.762, abstention 0.700 /
    0.643 -> 0.703 / 0.625. ``langs``: the languages the search was limited to, if it was."""
    out, seen = [], {h.row for h in hits}
    for hit in hits:
        out.append(hit)
        if not hit.chunk.origin.disputed_by:
            continue
        for cid, (row, chunk) in comments(store, hit.chunk.doc_id).items():
            if cid in hit.chunk.origin.disputed_by and (not langs or chunk.lang in langs) and row not in seen:
                seen.add(row)
                out.append(replace(hit, chunk=chunk, row=row))
    return out


def figures(text: str, terms: Iterable[str]) -> frozenset[str]:
    """What a sentence states that no paraphrase or translation writes otherwise: its terms (``terms``, of
    kb.text.tokenize) that state a figure (kb.text.is_figure), and those of its code, inline or fenced
    (kb.text.code_terms: a command, an option, a path). A sentence without one of another's says less, so it neither restates that
    one (kb.answer) nor translates it (kb.compose): a Chinese comment's "check with `lsinitrd`" for an English
    "check with `lsinitrd`, or on Ubuntu `lsinitramfs`" dropped the command the question asked for. 5-fold on
    the 1,970 tune questions with the adapter fixed, support 0.850 -> 0.855 (12 questions gained, 4 lost),
    support + min(abstention P, R) 1.762 -> 1.769; inline code alone, 1.766."""
    return frozenset(t for t in terms if is_figure(t)) | code_terms(text)


def coverage(
    query_terms: AbstractSet[str], text_terms: AbstractSet[str], weight: Callable[[str], float]
) -> float:
    """IDF-weighted share of the query's terms that ``text`` contains (0..1)."""
    total = sum(weight(t) for t in query_terms)
    return sum(weight(t) for t in query_terms & text_terms) / total if total else 0.0


class SentenceView:
    """The sentences one answer may use: its candidate passages' (retrieval has read them already) and any
    other passage's the answer reaches for (an FAQ entry's twin), read from the store once."""

    def __init__(self, store: Store, table: SentenceRows) -> None:
        self.store = store
        self.tables = [table]

    def _find(self, sid: int) -> tuple[SentenceRows, int]:
        for table in self.tables:
            i = int(np.searchsorted(table.sid, sid))
            if i < len(table) and int(table.sid[i]) == sid:
                return table, i
        raise KeyError(f"sentence {sid} is not in this answer's view")

    def vector(self, model_id: str, sid: int) -> np.ndarray:
        table, i = self._find(sid)
        return table.vectors[model_id][i]

    def span(self, sid: int) -> tuple[int, int, int]:
        """(chunk row, start, end) of a sentence."""
        table, i = self._find(sid)
        return int(table.row[i]), int(table.start[i]), int(table.end[i])

    def of_row(self, row: int) -> list[int]:
        """The sentence ids of one chunk, in text order."""
        for table in self.tables:
            a, b = int(np.searchsorted(table.row, row, "left")), int(np.searchsorted(table.row, row, "right"))
            if b > a:
                return [int(x) for x in table.sid[a:b]]
        table = self.store.sentences(np.array([row], np.int64))
        self.tables.append(table)
        return [int(x) for x in table.sid]


@dataclass(frozen=True)
class Candidate:
    sid: int  # sentence id
    row: int  # chunk row
    start: int
    end: int
    official: bool
    lang: str
    features: SentenceFeatures
    neutral: bool = False  # a code block without Chinese: in any language (kb.text.language_neutral)
    figures: frozenset[str] = frozenset()  # its figures and the terms of its code (``figures``)


@dataclass(frozen=True)
class Draft:
    """Everything decided before the models: retrieval hits and featurised candidate sentences."""

    question: str
    asked: str  # what the question asks (``asking``): its features read this, not the story around it
    lang: str  # the answer's language
    hits: list[Hit]
    candidates: list[Candidate]
    view: SentenceView
    unknown: float = 0.0  # share of the terms of what it asks (``asking``) that nothing quotable uses
    missing_name: float = 0.0  # 1.0 when what the question asks names something nothing quotable mentions
    relevance: float = 0.0  # the relevance model's best question-sentence cosine (0 without one)
    question_lang: str = ""  # the question's language (``lang`` may be another, when the asker sets it)
    standout: float = 0.0  # how far the best sentence cosine stands above the rest (kb.candidates.standout)
    adapter: Adapter | None = None  # what the relevance model's question vector went through (kb.calibration)


def standout(signals: Signals, minimum: int = ANSWERING.standout_sentences) -> float:
    """How many standard deviations the question's best sentence cosine stands above its cosines to every
    sentence of that sentence's language: the relevance model's, else the embedders' mean. Unlike a cosine,
    it means the same on any corpus and across languages, where cosines run at other levels. Every sentence
    is every scored one in an exact store; in a large one the store's sample stands for them (with the
    relevance model; without it, the candidates' sentences do, which stand out less). Like the relevance
    cosine, it reads the whole corpus whatever sources or languages the question is restricted to."""
    sims = signals.relevance
    if sims is None and signals.sentence_sims:
        sims = np.mean([np.asarray(v, np.float32) for v in signals.sentence_sims.values()], axis=0)
    if sims is None or not len(sims):
        return 0.0
    langs = signals.langs[np.searchsorted(signals.rows, signals.sentences.row)]
    best = int(np.argmax(sims))
    every, every_lang = (
        signals.background if signals.relevance is not None and signals.background else (sims, langs)
    )
    same = every[every_lang == langs[best]]
    spread = float(same.std()) if len(same) >= minimum else 0.0
    return float((sims[best] - same.mean()) / spread) if spread > 0 else 0.0


class Featuriser:
    """Turns retrieved passages into candidate sentences with the ranker's features."""

    def __init__(self, retriever: Retriever, answering: Answering = ANSWERING) -> None:
        self.retriever = retriever
        self.store = retriever.store
        self.answering = answering
        self._terms: OrderedDict[str, frozenset[str]] = OrderedDict()  # texts' token sets, by text
        self._lock = threading.Lock()

    def terms(self, text: str) -> frozenset[str]:
        """The tokens of a passage, sentence or heading, tokenized once while they are asked about often."""
        with self._lock:
            found = self._terms.get(text)
            if found is not None:
                self._terms.move_to_end(text)
                return found
        found = frozenset(tokenize(text))
        with self._lock:
            self._terms[text] = found
            if len(self._terms) > TERM_CACHE:
                self._terms.popitem(last=False)
        return found

    def coverage(self, query_terms: AbstractSet[str], text_terms: AbstractSet[str]) -> float:
        return coverage(query_terms, text_terms, self.store.term_weight)

    def candidates(self, question: str, signals: Signals, hits: list[Hit]) -> list[Candidate]:
        table = signals.sentences
        q_terms = set(tokenize(question))
        names = named_terms(question)
        named = named_langs(question)
        out = []
        for hit in [h for h in hits if quotable(h.chunk)][: self.answering.candidate_chunks]:
            doc = self.store.document(hit.chunk.doc_id)
            if doc is None:
                continue
            positions = signals.sentence_positions(hit.row)
            sims = self.similarity(signals, hit.chunk.lang, positions)
            question_match = max(sims.values(), default=0.0)
            # what an official passage's heading names (an FAQ question's "C4", the article's site)
            # its sentences are about, even when they do not repeat it
            heading = self.terms(hit.chunk.context) if hit.chunk.kind in OFFICIAL_KINDS else frozenset()
            # a thread comment answers the comment or post it replies to, which rides along as its
            # context: a reply to a comment that says what the question asks is likely its answer
            reply = self.coverage(q_terms, self.terms(hit.chunk.context)) if hit.chunk.is_reply else 0.0
            for i in positions:
                start, end = int(table.start[i]), int(table.end[i])
                text = doc.text[start:end]
                if not answers(text, self.answering):
                    continue
                lang = detect_lang(text) if hit.chunk.kind == "thread" else hit.chunk.lang
                terms = self.terms(text)
                features = SentenceFeatures(
                    dense=sims[i],
                    coverage=self.coverage(q_terms, terms),
                    names=sum(mentions(n, terms | heading) for n in names) / len(names) if names else 0.0,
                    inverse_rank=1.0 / hit.rank,
                    official=float(hit.chunk.kind in OFFICIAL_KINDS),
                    question_match=question_match,
                    reply=reply,
                    relevance=float(signals.relevance[i]) if signals.relevance is not None else 0.0,
                    named_lang=float(lang in named),
                )
                official = hit.chunk.kind in OFFICIAL_KINDS
                sid, neutral = int(table.sid[i]), language_neutral(text)
                stated = figures(text, terms)
                out.append(Candidate(sid, hit.row, start, end, official, lang, features, neutral, stated))
        return out

    def similarity(self, signals: Signals, passage_lang: str, positions: Sequence[int]) -> dict[int, float]:
        """Each sentence's cosine to the question, averaged over the embedders with the weights
        retrieval gives them for this language pair (for an English question over English text USE
        is the weaker signal). Across languages only multilingual embedders count: MiniLM's cosine
        between a Chinese question and an English sentence is noise (golden-set support +0.8 points)."""
        sims = signals.sentence_sims
        across = signals.query_lang != passage_lang
        weights = {
            m: signal_weight(self.retriever.weights, signals.query_lang, passage_lang, m)
            if self.retriever.embedders[m].multilingual or not across
            else 0.0
            for m in sims
        }
        total = sum(weights.values())
        if total <= 0:
            weights, total = dict.fromkeys(sims, 1.0), float(len(sims) or 1)
        return {i: sum(w * float(sims[m][i]) for m, w in weights.items()) / total for i in positions}

    def answer_features(
        self, draft: Draft, chosen: Sequence[Candidate], best_score: float, best: Candidate
    ) -> AnswerFeatures:
        """What the chosen sentences say about what the question asks: its names, its terms, a number."""
        sentences = []  # each chosen sentence's text and terms, with its official passage's heading's
        for cand in chosen:
            chunk = self.store.chunk(cand.row)
            doc = self.store.document(chunk.doc_id)
            text = doc.text[cand.start : cand.end] if doc else ""
            terms = self.terms(text)
            if chunk.kind in OFFICIAL_KINDS:
                terms |= self.terms(chunk.context or chunk.section)
            sentences.append((text, terms))
        said = frozenset().union(*(terms for _, terms in sentences))
        names = named_terms(draft.question)
        q_terms = set(tokenize(draft.question))
        return AnswerFeatures(
            ranker=best_score,
            dense=max(c.features.dense for c in draft.candidates),
            unknown=draft.unknown,
            missing_name=draft.missing_name,
            unmatched_name=sum(not mentions(n, said) for n in names) / len(names) if names else 0.0,
            coverage=self.coverage(q_terms, said),
            asks_unmet=float(unmet_by(draft.asked, sentences, draft.question)),
            across=float(best.lang != draft.lang),
            relevance=draft.relevance,
            chinese=float(draft.question_lang == "zh"),
            standout=draft.standout,
        )
