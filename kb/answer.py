"""Extractive answers: pick 1-3 sentences from the best chunks, cite each one exactly, verify
every citation against the document text, and abstain when confidence is low."""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kb.retrieve import Retriever, Signals
from kb.text import detect_lang, tokenize
from kb.types import OFFICIAL_KINDS, Answer, Citation, Document, Hit

log = logging.getLogger(__name__)

MAX_QUESTION_CHARS = 2000
CANDIDATE_CHUNKS = 5
MAX_SENTENCES = 3
REDUNDANT = 0.85  # sentence-vector cosine above which a second sentence adds nothing
ABSTAIN = {
    "en": "The material does not cover this question. The nearest passages are listed for you to check; "
          "they are not an answer.",
    "zh": "资料中没有涉及这个问题。下面列出最接近的段落供你核对,它们并不是答案。",
}
COMMUNITY = {"en": "Community report: ", "zh": "社区反馈:"}
CALIBRATION_FILE = Path(__file__).with_name("calibration.json")


class InvalidQuestion(ValueError):
    """The question is empty or too long."""


@dataclass(frozen=True)
class Calibration:
    """Logistic map from answer features to a 0..1 confidence, and the abstention threshold."""

    coef: dict[str, float] = field(default_factory=lambda: {"sentence": 6.0, "dense": 4.0, "overlap": 2.0,
                                                            "fused": 0.3})
    bias: float = -6.0
    threshold: float = 0.5

    @classmethod
    def load(cls, path: Path = CALIBRATION_FILE) -> Calibration:
        if not path.exists():
            return cls()
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(coef=data["coef"], bias=data["bias"], threshold=data["threshold"])

    def confidence(self, features: dict[str, float]) -> float:
        z = self.bias + sum(self.coef.get(k, 0.0) * v for k, v in features.items())
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))


@dataclass(frozen=True)
class Candidate:
    sid: int  # sentence row
    row: int  # chunk row
    start: int
    end: int
    score: float
    dense: float
    overlap: float
    official: bool
    lang: str


@dataclass(frozen=True)
class Draft:
    question: str
    lang: str
    hits: list[Hit]
    chosen: list[Candidate]
    features: dict[str, float]


def check_question(question: str) -> str:
    question = (question or "").strip()
    if not question:
        raise InvalidQuestion("the question is empty")
    if len(question) > MAX_QUESTION_CHARS:
        raise InvalidQuestion(f"the question is {len(question)} characters; the limit is {MAX_QUESTION_CHARS}")
    return question


def verify(citation: Citation, documents: dict[str, Document]) -> bool:
    """A citation is valid only if its quote is exactly the cited span of its document."""
    doc = documents.get(citation.doc_id)
    return (doc is not None and 0 <= citation.start < citation.end <= len(doc.text)
            and doc.text[citation.start : citation.end] == citation.quote)


class Answerer:
    def __init__(self, retriever: Retriever, calibration: Calibration | None = None) -> None:
        self.retriever = retriever
        self.calibration = calibration or Calibration.load()
        index = retriever.index
        self._sentences_by_row: dict[int, list[int]] = {}
        for i, row in enumerate(index.sentences.chunk_row.tolist()):
            self._sentences_by_row.setdefault(row, []).append(i)

    def draft(self, question: str, kinds: Collection[str] | None = None,
              langs: Collection[str] | None = None) -> Draft:
        """Retrieve and choose answer sentences, before the confidence decision."""
        question = check_question(question)
        signals = self.retriever.signals(question)
        hits = self.retriever.search(question, k=10, kinds=kinds, langs=langs, signals=signals)
        chosen = self._choose(self._candidates(question, signals, hits[:CANDIDATE_CHUNKS]))
        return Draft(question, signals.query_lang, hits, chosen, self._features(hits, chosen))

    def answer(self, question: str, kinds: Collection[str] | None = None,
               langs: Collection[str] | None = None) -> Answer:
        return self.finish(self.draft(question, kinds, langs))

    def finish(self, draft: Draft, calibration: Calibration | None = None) -> Answer:
        """Decide to answer or abstain, and build verified citations."""
        calibration = calibration or self.calibration
        answer_id = uuid.uuid4().hex
        confidence = round(calibration.confidence(draft.features), 4) if draft.chosen else 0.0
        if not draft.chosen or confidence < calibration.threshold:
            return self._abstain(answer_id, draft, confidence)
        citations, parts = [], []
        for cand in draft.chosen:
            citation = self._citation(len(citations) + 1, cand, draft.hits)
            if not verify(citation, self.retriever.index.documents):
                log.warning("dropped citation that failed verification: %s %d-%d", citation.doc_id,
                            citation.start, citation.end)
                continue
            citations.append(citation)
            prefix = "" if cand.official else COMMUNITY[draft.lang]
            parts.append(f"{prefix}{citation.quote}{'' if cand.lang == 'zh' else ' '}[{citation.n}]")
        if not citations:
            return self._abstain(answer_id, draft, 0.0)
        joiner = "" if draft.chosen[0].lang == "zh" else " "
        return Answer(answer_id, draft.question, joiner.join(parts), False, confidence, tuple(citations))

    # ------------------------------------------------------------ selection

    def _candidates(self, question: str, signals: Signals, hits: list[Hit]) -> list[Candidate]:
        index = self.retriever.index
        q_tokens = set(tokenize(question))
        if not hits:
            return []
        top = hits[0].score
        out = []
        for hit in hits:
            prior = 1.0 / hit.rank
            doc = index.documents[hit.chunk.doc_id]
            for i in self._sentences_by_row.get(hit.row, []):
                start, end = int(index.sentences.start[i]), int(index.sentences.end[i])
                text = doc.text[start:end]
                if len(text) < 6 or text.endswith(("?", "\uff1f", ":", "\uff1a")):
                    continue  # questions and lead-ins to a list or code block are not answers
                dense = float(np.mean([index.sentences.vectors[m][i] @ v
                                       for m, v in signals.query_vectors.items()])) if signals.query_vectors else 0.0
                s_tokens = set(tokenize(text))
                overlap = len(q_tokens & s_tokens) / len(q_tokens) if q_tokens else 0.0
                lang = detect_lang(text) if hit.chunk.kind == "thread" else hit.chunk.lang
                score = (0.55 * dense + 0.3 * overlap + 0.15 * prior + 0.05 * (lang == signals.query_lang)
                         + 0.02 * (hit.score >= top))
                out.append(Candidate(i, hit.row, start, end, score, dense, overlap,
                                     hit.chunk.kind in OFFICIAL_KINDS, lang))
        return sorted(out, key=lambda c: -c.score)

    def _choose(self, candidates: list[Candidate]) -> list[Candidate]:
        if not candidates:
            return []
        best = candidates[0]
        official = [c for c in candidates if c.official]
        if not best.official and official and official[0].score >= 0.85 * best.score:
            best = official[0]  # the official source wins over a thread comment
        chosen = [best]
        for cand in candidates:
            if len(chosen) >= MAX_SENTENCES or cand.score < 0.85 * best.score:
                break
            if cand in chosen or cand.lang != best.lang or (best.official and not cand.official):
                continue
            if any(self._similar(cand, c) for c in chosen):
                continue
            chosen.append(cand)
        return sorted(chosen, key=lambda c: (not c.official, c.row, c.start))

    def _similar(self, a: Candidate, b: Candidate) -> bool:
        """Overlapping spans, or two sentences that say the same (e.g. the article and the FAQ)."""
        if a.row == b.row and not (a.end <= b.start or b.end <= a.start):
            return True
        vectors = self.retriever.index.sentences.vectors.values()
        return any(float(v[a.sid] @ v[b.sid]) > REDUNDANT for v in vectors)

    @staticmethod
    def _features(hits: list[Hit], chosen: list[Candidate]) -> dict[str, float]:
        if not hits or not chosen:
            return {"sentence": 0.0, "dense": 0.0, "overlap": 0.0, "fused": 0.0}
        best = chosen[0]
        return {"sentence": best.score, "dense": best.dense, "overlap": best.overlap, "fused": hits[0].score}

    # ------------------------------------------------------------ output

    def _citation(self, n: int, cand: Candidate, hits: list[Hit]) -> Citation:
        chunk = self.retriever.index.chunks[cand.row]
        doc = self.retriever.index.documents[chunk.doc_id]
        score = next((h.score for h in hits if h.row == cand.row), 0.0)
        meta = chunk.meta or {}
        return Citation(
            n=n, chunk_id=chunk.chunk_id, doc_id=doc.doc_id, source=doc.kind, title=doc.title,
            section=chunk.section, url=meta.get("permalink") or meta.get("url") or doc.url,
            author=meta.get("author") or doc.author, date=meta.get("date") or doc.date, lang=chunk.lang,
            quote=doc.text[cand.start : cand.end], start=cand.start, end=cand.end, score=round(score, 4),
            community=chunk.kind == "thread")

    def _abstain(self, answer_id: str, draft: Draft, confidence: float) -> Answer:
        """Say the material does not cover it; list the nearest passages apart from the answer."""
        citations: list[Citation] = []
        index = self.retriever.index
        hits = draft.hits
        for hit in hits[:3]:
            sentences = self._sentences_by_row.get(hit.row, [])
            if not sentences:
                continue
            i = sentences[0]
            cand = Candidate(i, hit.row, int(index.sentences.start[i]), int(index.sentences.end[i]), hit.score,
                             hit.dense, 0.0, hit.chunk.kind in OFFICIAL_KINDS, hit.chunk.lang)
            citation = self._citation(len(citations) + 1, cand, hits)
            if verify(citation, index.documents):
                citations.append(citation)
        return Answer(answer_id, draft.question, ABSTAIN[draft.lang], True, confidence, tuple(citations))
