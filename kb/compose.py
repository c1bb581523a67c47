"""Saying the chosen sentences in the asker's language.

A sentence from the other language is replaced by its counterpart: the matching sentence of the FAQ
entry's twin (the entry key links them), or else a candidate of the answer's language that says the same
thing. A code block without Chinese is in either language and is quoted as it is. What nothing in the
answer's language carries is quoted as it is, and the answer says where it comes from ("From the Chinese
article:"). No fact is stated twice in two languages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np

from kb.candidates import Candidate, SentenceView, answers
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
            if cand.lang == answer_lang:
                said = cand
            elif cand.neutral:
                said = replace(cand, lang=answer_lang)  # a command reads the same in either language
            else:
                said = self.counterpart(cand, pool, answer_lang, view) or cand
            if any(c.sid == said.sid for c in out):
                continue
            if said.lang != answer_lang and any(
                self.cosine(view, said.sid, c.sid) >= self.answering.counterpart for c in out
            ):
                continue  # already said in the answer's language
            out.append(said)
        # A sentence left in the other language whose twin entry's closest sentence the answer quotes anyway,
        # and is close to, says that sentence's fact again ("主要原因是…维护成本…低" beside "Its main argument was
        # maintenance cost: …"): it goes.
        quoted = {c.sid for c in out}
        return [
            c for c in out if c.lang == answer_lang or not self._restates_twin(c, answer_lang, view, quoted)
        ]

    def _restates_twin(self, cand: Candidate, answer_lang: str, view: SentenceView, quoted: set[int]) -> bool:
        closest = self._twin_closest(cand, answer_lang, view)
        return (
            closest is not None
            and closest in quoted
            and self.cosine(view, cand.sid, closest) >= self.answering.twin_restates
        )

    def counterpart(
        self, cand: Candidate, pool: Sequence[Candidate], answer_lang: str, view: SentenceView
    ) -> Candidate | None:
        """The sentence of the twin entry that translates ``cand``, or a candidate in ``answer_lang`` close
        enough to say the same.

        Twin entries say the same things, not always sentence by sentence: one language may split, merge
        or add a sentence. A twin sentence counts as ``cand``'s translation only when each is the other's
        closest in its entry (mutual best match, as sentence aligners pair bitext); the closest alone can be
        another fact ("detaching is a forced detach" has no sentence of its own in one twin, whose closest
        is "kernels 4.2 and newer see a resize")."""
        best = self._twin_closest(cand, answer_lang, view)
        if best is not None and self._twin_closest(cand, cand.lang, view, sid=best) == cand.sid:
            row, start, end = view.span(best)
            return replace(cand, sid=best, row=row, start=start, end=end, lang=answer_lang)
        same = [c for c in pool if c.lang == answer_lang and c.official >= cand.official]
        scored = [(self.cosine(view, cand.sid, c.sid), c) for c in same]
        best_score, best_cand = max(scored, key=lambda x: x[0], default=(-1.0, None))
        return best_cand if best_cand is not None and best_score >= self.answering.counterpart else None

    def _twin_closest(
        self, cand: Candidate, lang: str, view: SentenceView, sid: int | None = None
    ) -> int | None:
        """The sentence, in ``lang``, of ``cand``'s FAQ entry that is closest to sentence ``sid`` (by default
        ``cand``'s own); None outside an FAQ entry, without one in ``lang``, or without a multilingual embedder
        to compare them."""
        target = cand.sid if sid is None else sid
        entry = self._entry_sentences(cand.row, lang, view) if self.multilingual else []
        return max(entry, key=lambda s: self.cosine(view, target, s)) if entry else None

    def _entry_sentences(self, row: int, lang: str, view: SentenceView) -> list[int]:
        """The quotable sentences, in ``lang``, of the FAQ entry that chunk ``row`` belongs to (none for a
        passage outside an FAQ entry)."""
        chunk = self.store.chunk(row)
        if chunk.kind not in OFFICIAL_KINDS or not chunk.origin.entry_key:
            return []
        entry_doc = f"{chunk.doc_id.rsplit('.', 1)[0]}.{lang}"
        doc = self.store.document(entry_doc)
        if doc is None:
            return []
        rows = [
            int(r)
            for r in self.store.document_rows(entry_doc)
            if self.store.chunk(int(r)).origin.entry_key == chunk.origin.entry_key
        ]
        out = []
        for r in rows:
            for sid in view.of_row(r):
                _, start, end = view.span(sid)
                if answers(doc.text[start:end], self.answering):
                    out.append(sid)
        return out
