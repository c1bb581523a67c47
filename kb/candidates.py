"""Candidate answer sentences and what the answerer's two models read about them.

A candidate is a quotable unit (a sentence, a short list or table with its lead-in, a short reply) of one of
the best retrieved passages. Thread comments that only ask, and comments whose claim a later reply corrects
(ingest/conversation.py), are never candidates: a corrected claim must not reach a reader as an answer.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

import numpy as np

from kb.calibration import AnswerFeatures, SentenceFeatures
from kb.fusion import signal_weight
from kb.retrieve import Retriever, Signals
from kb.store import SentenceRows, Store
from kb.text import (
    LEAD_IN_ENDS,
    QUESTION_ENDS,
    detect_lang,
    is_figure,
    language_neutral,
    sentence_spans,
    tokenize,
)
from kb.tuning import ANSWERING, Answering
from kb.types import OFFICIAL_KINDS, Hit, quotable

TERM_CACHE = (
    50_000  # passage and sentence texts whose tokens are kept: a small corpus's all, a large one's hot
)

# Things a question names: words with a digit (c6i, p3.16xlarge, us-east-1), a capital (Graviton, vCPUs)
# or code punctuation (board_asset_tag, net.ifnames). One the corpus never mentions is strong evidence the
# material cannot answer; one a sentence contains is evidence the sentence is about the right thing.
# ASCII only, so a name written against Chinese text ("KVM为什么比Xen好") stops at the first Chinese character.
WORD = re.compile(r"(?<![\w.\-])-{0,2}[A-Za-z0-9][\w.\-]*", re.ASCII)
# What a question asks for, and what a sentence that answers it must hold: a price needs a currency, a date
# a year or a month, a percentage a per cent, a link an address, a version a dotted number (or an API's dated
# one), a count or a size a digit. A near miss ("when did C5 reach Frankfurt?", "link to the Nitro source?")
# is answered by sentences about the topic that hold none of these. The percentage, link and version kinds
# joined the first three after reading tune's unanswerable questions that were answered: 5-fold on tune,
# support + min(abstention P, R) 1.431 -> 1.494; on 140 new questions written without seeing the code, before
# they joined tune, 1.061 -> 1.133 (evals/README.md, round 4); on 120 more (round 5), 1.063 -> 1.127, there a
# trade: recall 0.36 -> 0.47, support 0.70 -> 0.66.
ASKS: dict[str, tuple[re.Pattern[str], re.Pattern[str]]] = {
    "price": (
        re.compile(
            r"\b(price|pricing|cost|costs|how much does|per hour|hourly)\b|多少钱|价格|价钱|费用|单价|收费",
            re.I,
        ),
        re.compile(r"[$¥€£]|\b(usd|dollars?|cents?)\b|美元|元|美分", re.I),
    ),
    "date": (
        re.compile(
            r"\b(when|what (year|date|day|month)|since when|how long ago)\b|哪天|哪一天|何时|什么时候|哪年|哪一年|几月",
            re.I,
        ),
        re.compile(
            r"\b(1[89]|20)\d\d\b|\b(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\b|\d+\s*月", re.I
        ),
    ),
    "percent": (
        re.compile(r"\b(percent|percentage)\b|%|百分之|百分比", re.I),
        re.compile(r"%|\bpercent\b|百分", re.I),
    ),
    "link": (
        re.compile(r"\b(link|url|repo)\b|链接|网址", re.I),
        re.compile(r"https?://|\b[\w.-]+/[\w.-]+#\d+|\bgithub\.com\b", re.I),  # an address or owner/repo#N
    ),
    "version": (
        re.compile(r"\bversion\b|版本", re.I),
        re.compile(r"\b\d+(\.\d+)+\b|\b\d{4}-\d\d-\d\d\b"),  # 4.15, 2017.09.01, 2016-11-15
    ),
    "quantity": (
        re.compile(
            r"\b(how (many|much|big|fast|long|large)|maximum|minimum|limit|number of)\b|多少|几[个台块种天年核路]|多大|多快|多久|上限|最多|最大",
            re.I,
        ),
        re.compile(r"\d"),
    ),
}
NOT_ANSWERS = (*QUESTION_ENDS, *LEAD_IN_ENDS)  # questions, and lead-ins to a list or code block


def unmet(question: str, answer: str) -> bool:
    """The question asks for something (``ASKS``) that the answer's text does not hold. The answerer passes
    what the question asks (``asking``), as for the names and words nobody uses: the story around it ("paged
    at 3 a.m. when /data went read-only…") asks for no date. 5-fold on the 570 tune questions of round 4,
    support + min(abstention P, R) 1.384 -> 1.398; on round 5, then unseen, 1.127 -> 1.111 (support 0.655 ->
    0.667, precision 0.567 -> 0.615, one near miss fewer caught)."""
    return any(asked.search(question) and not holds.search(answer) for asked, holds in ASKS.values())


def answers(text: str, answering: Answering = ANSWERING) -> bool:
    """A unit long enough to answer with that neither asks nor only leads in to what follows it."""
    return len(text) >= answering.min_sentence_chars and not text.endswith(NOT_ANSWERS)


def _is_name(word: str) -> bool:
    return any(ch.isdigit() or ch.isupper() for ch in word) or "_" in word or "." in word


def asking(question: str) -> str:
    """What the question asks: its sentences that end in a question mark, when it also has others. A long
    question's story names tools, errors and places the material need not mention ("our nightly pg_dump on a
    c5.xlarge…", "iperf3 between two c5.18xlarge…"), and only what it asks must be covered; judged on the whole
    question, 17 answerable tune questions named something the corpus does not, none of them in what they asked
    (5-fold on tune, confidence AUC 0.829 -> 0.851, people-style questions 0.725 -> 0.762). A question
    without a question mark, or with nothing else, is all asking."""
    sentences = [question[a:b] for a, b in sentence_spans(question)]
    asked = [s for s in sentences if s.endswith(QUESTION_ENDS)]
    return " ".join(asked) if asked and len(asked) < len(sentences) else question


def named_terms(question: str) -> list[str]:
    """The index term of each thing the question names; a capitalised first word is not a name."""
    out = []
    for match in WORD.finditer(question):
        word = match.group().rstrip(".-")
        first = not question[: match.start()].strip()
        if _is_name(word) and not (first and not any(ch.isdigit() for ch in word)):
            out.extend(tokenize(word)[:1])  # a compound such as c5.18xlarge is its first token
    return out


def figures(terms: Iterable[str]) -> frozenset[str]:
    """The terms (kb.text.tokenize) that state a figure (kb.text.is_figure)."""
    return frozenset(t for t in terms if is_figure(t))


def mentions(name: str, terms: Collection[str]) -> bool:
    """``terms`` hold the name, alone or inside a longer compound (``board_asset_tag`` in a path)."""
    return name in terms or any(name in term for term in terms)


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
    figures: frozenset[str] = frozenset()  # its terms that state a figure (``figures``)


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
                )
                official = hit.chunk.kind in OFFICIAL_KINDS
                sid, neutral = int(table.sid[i]), language_neutral(text)
                stated = figures(terms)
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
        said: set[str] = set()
        texts = []
        for cand in chosen:
            chunk = self.store.chunk(cand.row)
            doc = self.store.document(chunk.doc_id)
            texts.append(doc.text[cand.start : cand.end] if doc else "")
            said |= self.terms(texts[-1])
            if chunk.kind in OFFICIAL_KINDS:
                said |= self.terms(chunk.context or chunk.section)
        names = named_terms(draft.question)
        q_terms = set(tokenize(draft.question))
        return AnswerFeatures(
            ranker=best_score,
            dense=max(c.features.dense for c in draft.candidates),
            unknown=draft.unknown,
            missing_name=draft.missing_name,
            unmatched_name=sum(not mentions(n, said) for n in names) / len(names) if names else 0.0,
            coverage=self.coverage(q_terms, said),
            asks_unmet=float(unmet(draft.asked, " ".join(texts))),
            across=float(best.lang != draft.lang),
            relevance=draft.relevance,
            chinese=float(draft.question_lang == "zh"),
            standout=draft.standout,
        )
