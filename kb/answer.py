"""Extractive answers: rank the sentences of the best chunks, answer with the best one and the
strongest other sentences (official sources first), cite each sentence exactly, verify every
citation against the document text, and abstain when the calibrated confidence is low.

Two small logistic models decide (kb/calibration.py): a sentence ranker (is this sentence the
answer?) and a confidence model (does the material cover this question at all?).
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Collection
from dataclasses import dataclass

from kb.calibration import Calibration
from kb.retrieve import Retriever, Signals, signal_weight
from kb.text import detect_lang, tokenize
from kb.types import OFFICIAL_KINDS, Answer, Citation, Document, Hit

log = logging.getLogger(__name__)

MAX_QUESTION_CHARS = 2000
CANDIDATE_CHUNKS = 5
MAX_SENTENCES = 3
NEIGHBOUR_SHARE = 0.1  # another sentence must score at least this share of the best one
REDUNDANT = 0.75  # sentence-vector cosine above which a sentence from another passage adds nothing
ABSTAIN = {
    "en": "The material does not cover this question. The nearest passages are listed for you to check; "
    "they are not an answer.",
    "zh": "资料中没有涉及这个问题。下面列出最接近的段落供你核对,它们并不是答案。",
}
COMMUNITY = {"en": "Community report: ", "zh": "社区反馈:"}
# Things a question names: words with a digit (c6i, p3.16xlarge, us-east-1), a capital (Graviton, vCPUs)
# or code punctuation (board_asset_tag, net.ifnames). One the corpus never mentions is strong evidence the
# material cannot answer; one a sentence contains is evidence the sentence is about the right thing.
# ASCII only, so a name written against Chinese text ("KVM为什么比Xen好") stops at the first Chinese character.
WORD = re.compile(r"(?<![\w.\-])-{0,2}[A-Za-z0-9][\w.\-]*", re.ASCII)


def _is_name(word: str) -> bool:
    return any(ch.isdigit() or ch.isupper() for ch in word) or "_" in word or "." in word


def named_terms(question: str) -> list[str]:
    """The index term of each thing the question names; a capitalised first word is not a name."""
    out = []
    for match in WORD.finditer(question):
        word = match.group().rstrip(".-")
        first = not question[: match.start()].strip()
        if _is_name(word) and not (first and not any(ch.isdigit() for ch in word)):
            out.extend(tokenize(word)[:1])  # a compound such as c5.18xlarge is its first token
    return out


def mentions(name: str, terms: Collection[str]) -> bool:
    """``terms`` hold the name, alone or inside a longer compound (``board_asset_tag`` in a path)."""
    return name in terms or any(name in term for term in terms)


def _join(parts: list[str], joiner: str) -> str:
    """Sentences run on; a block (a list, a table, a code block) stands apart on its own lines, so
    the next sentence does not continue its last row."""
    out = parts[:1]
    for before, part in zip(parts, parts[1:], strict=False):
        out.append(("\n\n" if "\n" in before or "\n" in part else joiner) + part)
    return "".join(out)


class InvalidQuestion(ValueError):
    """The question is empty or too long."""


@dataclass(frozen=True)
class Candidate:
    sid: int  # sentence row
    row: int  # chunk row
    start: int
    end: int
    official: bool
    lang: str
    features: dict[str, float]


@dataclass(frozen=True)
class Draft:
    """Everything decided before the model: retrieval hits and featurised candidate sentences."""

    question: str
    lang: str
    hits: list[Hit]
    candidates: list[Candidate]
    unknown: float = 0.0  # share of the question's terms that appear nowhere in the corpus
    missing_name: float = 0.0  # 1.0 when the question names something the corpus never mentions


def check_question(question: str) -> str:
    question = (question or "").strip()
    if not question:
        raise InvalidQuestion("the question is empty")
    if len(question) > MAX_QUESTION_CHARS:
        raise InvalidQuestion(
            f"the question is {len(question)} characters; the limit is {MAX_QUESTION_CHARS}"
        )
    return question


def verify(citation: Citation, documents: dict[str, Document]) -> bool:
    """A citation is valid only if its quote is exactly the cited span of its document."""
    doc = documents.get(citation.doc_id)
    return (
        doc is not None
        and 0 <= citation.start < citation.end <= len(doc.text)
        and doc.text[citation.start : citation.end] == citation.quote
    )


class Answerer:
    def __init__(self, retriever: Retriever, calibration: Calibration | None = None) -> None:
        self.retriever = retriever
        self.calibration = calibration or Calibration.load(list(retriever.embedders))
        self._sentences_by_row: dict[int, list[int]] = {}
        for i, row in enumerate(retriever.index.sentences.chunk_row.tolist()):
            self._sentences_by_row.setdefault(row, []).append(i)

    def answer(
        self, question: str, kinds: Collection[str] | None = None, langs: Collection[str] | None = None
    ) -> Answer:
        return self.finish(self.draft(question, kinds, langs))

    def draft(
        self, question: str, kinds: Collection[str] | None = None, langs: Collection[str] | None = None
    ) -> Draft:
        """Retrieve and featurise candidate sentences, before any model decides."""
        question = check_question(question)
        signals = self.retriever.signals(question)
        hits = self.retriever.search(question, k=10, kinds=kinds, langs=langs, signals=signals)
        terms = set(tokenize(question))
        vocab = self.retriever.index.lexical.vocab
        unknown = sum(t not in vocab for t in terms) / len(terms) if terms else 0.0
        missing_name = float(any(not mentions(name, vocab) for name in named_terms(question)))
        candidates = self._candidates(question, signals, hits)
        return Draft(question, signals.query_lang, hits, candidates, unknown, missing_name)

    def finish(self, draft: Draft, calibration: Calibration | None = None) -> Answer:
        """Choose sentences, decide to answer or abstain, and build verified citations."""
        model = calibration or self.calibration
        chosen, features = self.choose(draft, model)
        confidence = round(model.confidence(features), 4) if chosen else 0.0
        answer_id = uuid.uuid4().hex
        if not chosen or confidence < model.threshold:
            return self._abstain(answer_id, draft, confidence)
        citations: list[Citation] = []
        parts: list[str] = []
        for cand in chosen:
            citation = self._citation(len(citations) + 1, cand, draft.hits)
            if not verify(citation, self.retriever.index.documents):
                log.warning(
                    "dropped a citation that failed verification: %s %d-%d",
                    citation.doc_id,
                    citation.start,
                    citation.end,
                )
                continue
            citations.append(citation)
            prefix = "" if cand.official else COMMUNITY[draft.lang]
            parts.append(f"{prefix}{citation.quote}{'' if cand.lang == 'zh' else ' '}[{citation.n}]")
        if not citations:
            return self._abstain(answer_id, draft, 0.0)
        joiner = "" if all(c.lang == "zh" for c in chosen) else " "
        return Answer(answer_id, draft.question, _join(parts, joiner), False, confidence, tuple(citations))

    # ------------------------------------------------------------ candidates

    def _candidates(self, question: str, signals: Signals, hits: list[Hit]) -> list[Candidate]:
        index = self.retriever.index
        lexical = index.lexical
        q_terms = set(tokenize(question))
        names = named_terms(question)
        out = []
        for hit in hits[:CANDIDATE_CHUNKS]:
            doc = index.documents[hit.chunk.doc_id]
            sids = self._sentences_by_row.get(hit.row, [])
            sims = self._sentence_similarity(signals, hit.chunk.lang, sids)
            question_match = max(sims.values(), default=0.0)
            chunk_coverage = lexical.coverage(
                q_terms, set(tokenize(hit.chunk.context + " " + hit.chunk.text))
            )
            # what an official passage's heading names (an FAQ question's "C4", the article's site)
            # its sentences are about, even when they do not repeat it
            heading = set(tokenize(hit.chunk.context)) if hit.chunk.kind in OFFICIAL_KINDS else set()
            # a thread comment answers the comment or post it replies to, which rides along as its
            # context: a reply to a comment that says what the question asks is likely its answer
            reply = lexical.coverage(q_terms, set(tokenize(hit.chunk.context))) if hit.chunk.is_reply else 0.0
            lead = True
            for i in sids:
                start, end = int(index.sentences.start[i]), int(index.sentences.end[i])
                text = doc.text[start:end]
                if len(text) < 6 or text.endswith(("?", "\uff1f", ":", "\uff1a")):
                    continue  # questions and lead-ins to a list or code block are not answers
                lang = detect_lang(text) if hit.chunk.kind == "thread" else hit.chunk.lang
                terms = set(tokenize(text))
                features = {
                    "dense": sims[i],
                    "coverage": lexical.coverage(q_terms, terms),
                    "names": sum(mentions(n, terms | heading) for n in names) / len(names) if names else 0.0,
                    "chunk_coverage": chunk_coverage,
                    "fused": hit.score,
                    "inverse_rank": 1.0 / hit.rank,
                    "same_lang": float(lang == signals.query_lang),
                    "official": float(hit.chunk.kind in OFFICIAL_KINDS),
                    "lead": float(lead),
                    "question_match": question_match,
                    "reply": reply,
                }
                lead = False
                out.append(
                    Candidate(i, hit.row, start, end, hit.chunk.kind in OFFICIAL_KINDS, lang, features)
                )
        return out

    def _sentence_similarity(self, signals: Signals, passage_lang: str, sids: list[int]) -> dict[int, float]:
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
        return {i: sum(w * float(sims[m][i]) for m, w in weights.items()) / total for i in sids}

    # ------------------------------------------------------------ choice

    def choose(self, draft: Draft, model: Calibration) -> tuple[list[Candidate], dict[str, float]]:
        """The best sentence and the strongest non-redundant others from any candidate passage,
        plus the features the confidence model reads.

        Official sentences come first, then community reports; within each, the best sentence's
        passage leads, then the others in retrieval order, each in document order: when a thread comment and the FAQ or
        the article disagree, the official source leads and the comment follows, labelled.
        """
        if not draft.candidates:
            return [], {}
        scored = sorted(((model.ranker(c.features), c) for c in draft.candidates), key=lambda x: -x[0])
        best_score, best = scored[0]
        chosen = [best]
        for score, cand in scored[1:]:
            if len(chosen) >= MAX_SENTENCES or score < NEIGHBOUR_SHARE * best_score:
                break
            if not any(self._similar(cand, c) for c in chosen):
                chosen.append(cand)
        features = {
            "ranker": best_score,
            "dense": max(c.features["dense"] for c in draft.candidates),
            "unknown": draft.unknown,
            "missing_name": draft.missing_name,
        }
        rank = {h.row: h.rank for h in draft.hits}
        order = sorted(chosen, key=lambda c: (not c.official, c.row != best.row, rank[c.row], c.start))
        return order, features

    def _similar(self, a: Candidate, b: Candidate) -> bool:
        """Overlapping spans, or two sentences from different passages that say the same thing.

        Within one passage only overlap counts: an FAQ answer or a comment does not restate itself,
        and its neighbouring sentences share a topic, so their vectors are close while each adds a
        fact ("set nvme_core.io_timeout" and "the maximum is 4294967295, or 255 before 4.15")."""
        if a.row == b.row:
            return not (a.end <= b.start or b.end <= a.start)
        vectors = self.retriever.index.sentences.vectors.values()
        return any(float(v[a.sid] @ v[b.sid]) > REDUNDANT for v in vectors)

    # ------------------------------------------------------------ output

    def _citation(self, n: int, cand: Candidate, hits: list[Hit]) -> Citation:
        chunk = self.retriever.index.chunks[cand.row]
        doc = self.retriever.index.documents[chunk.doc_id]
        score = next((h.score for h in hits if h.row == cand.row), 0.0)
        meta = chunk.meta or {}
        return Citation(
            n=n,
            chunk_id=chunk.chunk_id,
            doc_id=doc.doc_id,
            source=doc.kind,
            title=doc.title,
            section=chunk.section,
            url=meta.get("permalink") or meta.get("url") or doc.url,
            author=meta.get("author") or doc.author,
            date=meta.get("date") or doc.date,
            lang=chunk.lang,
            quote=doc.text[cand.start : cand.end],
            start=cand.start,
            end=cand.end,
            score=round(score, 4),
            community=chunk.kind == "thread",
        )

    def _abstain(self, answer_id: str, draft: Draft, confidence: float) -> Answer:
        """Say the material does not cover it; list the nearest passages apart from the answer."""
        citations: list[Citation] = []
        index = self.retriever.index
        for hit in draft.hits[:3]:
            sids = self._sentences_by_row.get(hit.row, [])
            if not sids:
                continue
            i = sids[0]
            cand = Candidate(
                i,
                hit.row,
                int(index.sentences.start[i]),
                int(index.sentences.end[i]),
                hit.chunk.kind in OFFICIAL_KINDS,
                hit.chunk.lang,
                {},
            )
            citation = self._citation(len(citations) + 1, cand, draft.hits)
            if verify(citation, index.documents):
                citations.append(citation)
        return Answer(answer_id, draft.question, ABSTAIN[draft.lang], True, confidence, tuple(citations))
