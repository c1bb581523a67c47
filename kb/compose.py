"""Saying the chosen sentences in the asker's language.

A sentence from the other language is replaced by its counterpart: the matching sentence of the FAQ
entry's twin (the entry key links them), or else a candidate of the answer's language that says the same
thing. What nothing in the answer's language carries is quoted as it is, and the answer says where it
comes from ("From the Chinese article:"). No fact is stated twice in two languages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np

from kb.candidates import NOT_ANSWERS, Candidate, SentenceView
from kb.embed import Embedder
from kb.store import Store
from kb.tuning import ANSWERING, Answering
from kb.types import OFFICIAL_KINDS

# What precedes a quote that is not plain official text in the answer's language, by (answer language,
# source kind, quote language).
LABELS: Mapping[str, Mapping[tuple[str, str], str]] = {
    "en": {
        ("article", "zh"): "From the Chinese article: ",
        ("faq", "zh"): "From the Chinese FAQ: ",
        ("thread", "zh"): "Community report (in Chinese): ",
        ("thread", "en"): "Community report: ",
    },
    "zh": {
        ("article", "en"): "摘自英文文章:",
        ("faq", "en"): "摘自英文 FAQ:",
        ("thread", "en"): "社区反馈(英文):",
        ("thread", "zh"): "社区反馈:",
    },
}


def label(answer_lang: str, kind: str, quote_lang: str) -> str:
    return LABELS.get(answer_lang, LABELS["en"]).get((kind, quote_lang), "")


def join(parts: list[str], joiner: str) -> str:
    """Sentences run on; a block (a list, a table, a code block) stands apart on its own lines, so
    the next sentence does not continue its last row."""
    out = parts[:1]
    for before, part in zip(parts, parts[1:], strict=False):
        out.append(("\n\n" if "\n" in before or "\n" in part else joiner) + part)
    return "".join(out)


class Realiser:
    """Finds, for a sentence in one language, the sentence that says it in the other."""

    def __init__(
        self, store: Store, embedders: Mapping[str, Embedder], answering: Answering = ANSWERING
    ) -> None:
        self.store = store
        self.answering = answering
        self.multilingual = [m for m, e in embedders.items() if e.multilingual]

    def cosine(self, view: SentenceView, a: int, b: int) -> float:
        """Cross-language cosine of two sentences: multilingual embedders only (-1 without one)."""
        return (
            float(np.mean([view.vector(m, a) @ view.vector(m, b) for m in self.multilingual]))
            if self.multilingual
            else -1.0
        )

    def realise(
        self, chosen: Sequence[Candidate], pool: Sequence[Candidate], answer_lang: str, view: SentenceView
    ) -> list[Candidate]:
        """``chosen`` said in ``answer_lang`` where the material allows, without restating a fact."""
        out: list[Candidate] = []
        for cand in chosen:
            said = (
                cand
                if cand.lang == answer_lang
                else (self.counterpart(cand, pool, answer_lang, view) or cand)
            )
            if any(c.sid == said.sid for c in out):
                continue
            if said.lang != answer_lang and any(
                self.cosine(view, said.sid, c.sid) >= self.answering.counterpart for c in out
            ):
                continue  # already said in the answer's language
            out.append(said)
        return out

    def counterpart(
        self, cand: Candidate, pool: Sequence[Candidate], answer_lang: str, view: SentenceView
    ) -> Candidate | None:
        """The twin entry's closest sentence, or a candidate in ``answer_lang`` close enough to say the same."""
        twin = self._twin_sentences(cand, answer_lang, view)
        if twin:
            best = max(twin, key=lambda sid: self.cosine(view, cand.sid, sid))
            row, start, end = view.span(best)
            return replace(cand, sid=best, row=row, start=start, end=end, lang=answer_lang)
        same = [c for c in pool if c.lang == answer_lang and c.official >= cand.official]
        scored = [(self.cosine(view, cand.sid, c.sid), c) for c in same]
        best_score, best_cand = max(scored, key=lambda x: x[0], default=(-1.0, None))
        return best_cand if best_cand is not None and best_score >= self.answering.counterpart else None

    def _twin_sentences(self, cand: Candidate, answer_lang: str, view: SentenceView) -> list[int]:
        chunk = self.store.chunk(cand.row)
        if chunk.kind not in OFFICIAL_KINDS or not chunk.origin.entry_key:
            return []
        twin_doc = f"{chunk.doc_id.rsplit('.', 1)[0]}.{answer_lang}"
        doc = self.store.document(twin_doc)
        if doc is None:
            return []
        rows = [
            int(row)
            for row in self.store.document_rows(twin_doc)
            if self.store.chunk(int(row)).origin.entry_key == chunk.origin.entry_key
        ]
        out = []
        for row in rows:
            for sid in view.of_row(row):
                _, start, end = view.span(sid)
                if end - start >= self.answering.min_sentence_chars and not doc.text[start:end].endswith(
                    NOT_ANSWERS
                ):
                    out.append(sid)
        return out
