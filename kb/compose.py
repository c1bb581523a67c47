"""Saying the chosen sentences in the asker's language.

A sentence from the other language is replaced by its counterpart: the matching sentence of the FAQ
entry's twin (the entry key links them), or else a sentence of the answer's language that says the same
thing, among the candidates or in the official passages nearest to it; either way one that states its
figures, or with the sentences that state the ones it drops. A code block without Chinese is in either
language and is quoted as it is. What nothing in the answer's language carries is quoted as it is, and the
answer says where it comes from ("From the Chinese article:"), and so is what the question asks of the other
language's material ("what title does the Chinese article give Jeff Barr?") when no FAQ twin says it: the
nearest sentence in the asker's language keeps the topic and loses the words asked about
(kb.question.named_langs). No fact is stated twice in two languages.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import replace

import numpy as np

from kb.candidates import Candidate, SentenceView, answers, figures
from kb.embed import Embedder
from kb.store import Store
from kb.text import detect_lang, tokenize
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


def specific(figures: AbstractSet[str]) -> frozenset[str]:
    """The figures a translation must keep ("us-east-1", "4.15", "255", "2016-11-15", a command's words:
    kb.candidates.figures). Numbers of one or two digits are left out: the other language often writes them
    otherwise ("November" for 11 月, "two" for 2)."""
    return frozenset(f for f in figures if len(f) > 2 or not f.isdigit())


def _cover(
    needed: frozenset[str],
    options: Iterable[Candidate],
    states: Callable[[Candidate], frozenset[str]],
    keep: int = 1,
) -> list[Candidate]:
    """The first ``keep`` of ``options`` and, after them, those that state a figure in ``needed`` they do
    not (``states``: what an option states), until all are stated; none when they never are."""
    said: list[Candidate] = []
    missing = set(needed)
    for part in options:
        if len(said) >= keep and not states(part) & missing:
            continue
        said.append(part)
        missing -= states(part)
        if not missing and len(said) >= keep:
            return said
    return []


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
        self,
        chosen: Sequence[Candidate],
        pool: Sequence[Candidate],
        answer_lang: str,
        view: SentenceView,
        named: AbstractSet[str] = frozenset(),
    ) -> list[Candidate]:
        """``chosen`` said in ``answer_lang`` where the material allows, without restating a fact; a sentence in
        a language the question ``named`` is quoted as it is."""
        out: list[Candidate] = []
        for cand in chosen:
            if cand.lang == answer_lang:
                said = [cand]
            elif cand.lang in named and not self._entry_sentences(cand.row, answer_lang, view):
                said = [cand]  # asked of that language's material, and no FAQ twin says it
            elif cand.neutral:
                said = [replace(cand, lang=answer_lang)]  # a command reads the same in either language
            else:
                said = self.counterpart(cand, pool, answer_lang, view) or [cand]
            for part in said:
                if any(c.sid == part.sid or self._text(c) == self._text(part) for c in out):
                    continue  # quoted already (a code block is in both twins, word for word)
                if part.lang != answer_lang and any(
                    self.cosine(view, part.sid, c.sid) >= self.answering.counterpart
                    and specific(part.figures) <= self._states(c)
                    for c in out
                ):
                    continue  # already said in the answer's language
                out.append(part)
        # A sentence left in the other language close to a sentence of its twin entry that the answer quotes
        # anyway says that sentence's fact again ("主要原因是…维护成本…低" beside "Its main argument was
        # maintenance cost: …"): it goes.
        quoted = {c.sid for c in out}
        out = [
            c for c in out if c.lang == answer_lang or not self._restates_twin(c, answer_lang, view, quoted)
        ]
        # An answer led in its language is written in it: quotes in the other language add to it, they do not
        # make up most of it. The weakest of them go until they do not. It leads with what the reader reads
        # first, its first official sentence (kb.answer orders them first), not with the best one: a reply in
        # the other language ranked best ("没有一半。…" for "is C5 half the price of C4?") under English official
        # sentences otherwise made up most of an English answer (5-fold on the 2,130 tune questions with the
        # adapter fixed: language match 0.961 -> 0.977, support + min(abstention P, R) 1.796 -> 1.797).
        lead = next((c for c in out if c.official), out[0]) if out else None
        while (
            lead is not None
            and lead.lang == answer_lang
            and detect_lang(" ".join(map(self._text, out))) != answer_lang
        ):
            other = [i for i, c in enumerate(out) if c is not lead and c.lang != answer_lang]
            if not other:
                break
            del out[other[-1]]
        return out

    def _states(self, cand: Candidate) -> frozenset[str]:
        """What a sentence states, for whether it keeps another's figures: its figures and its words. One
        language may write as a word what the other writes as code: "用文件系统的 UUID 或 LABEL 挂载" says "mount
        filesystems by `UUID` or `LABEL`", but its figures (kb.candidates.figures) held neither word, so the
        English sentence stood in a Chinese answer (5-fold on the 2,450 tune questions with the
        adapter fixed: support 0.893 -> 0.897, support + min(abstention P, R) 1.785 -> 1.788; beside
        ``diversity`` it changed one answer, now in its question's language)."""
        return cand.figures | frozenset(tokenize(self._text(cand)))

    def _text(self, cand: Candidate) -> str:
        doc = self.store.document(self.store.chunk(cand.row).doc_id)
        return doc.text[cand.start : cand.end] if doc else ""

    def _restates_twin(self, cand: Candidate, answer_lang: str, view: SentenceView, quoted: set[int]) -> bool:
        """Whether a sentence of ``cand``'s twin entry that the answer quotes says what ``cand`` says: close
        (one language may merge two sentences into one, so not only the closest counts) and stating its
        figures."""
        entry = self._entry_sentences(cand.row, answer_lang, view) if self.multilingual else []
        return any(
            self.cosine(view, cand.sid, sid) >= self.answering.twin_restates
            and specific(cand.figures) <= self._states(self._at(cand, sid, answer_lang, view))
            for sid in entry
            if sid in quoted
        )

    def counterpart(
        self, cand: Candidate, pool: Sequence[Candidate], answer_lang: str, view: SentenceView
    ) -> list[Candidate]:
        """The sentences of the twin entry that translate ``cand``, or a candidate in ``answer_lang`` close
        enough to say the same; none when nothing in ``answer_lang`` says all of it.

        Twin entries say the same things, not always sentence by sentence: one language may split, merge
        or add a sentence. A twin sentence counts as ``cand``'s translation only when each is the other's
        closest in its entry (mutual best match, as sentence aligners pair bitext, or two neighbours that the
        twin says in one sentence), and with it the rest of its bead (``_bead``: one sentence the twin says in
        two, "最可靠的…身份文档…可能误判" is "Fetch the identity document…" and "it can give false positives");
        the closest alone can be another fact ("detaching is a forced detach" has
        no sentence of its own in one twin, whose closest is "kernels 4.2 and newer see a resize"). A figure
        ``cand`` states that its translation drops (the region codes beside "three regions") is said by the
        twin's closest sentences that state it, where one language split the sentence; a figure nothing in
        ``answer_lang`` states leaves ``cand`` as it is."""
        needed = specific(cand.figures)
        entry = self._entry_sentences(cand.row, answer_lang, view) if self.multilingual else []
        if entry:
            closest = sorted(entry, key=lambda s: -self.cosine(view, cand.sid, s))
            back = self._twin_closest(cand, cand.lang, view, sid=closest[0])
            if back is not None and self._aligned(cand, back, closest[0], answer_lang, view):
                bead = self._bead(cand, entry, closest[0], answer_lang, view)
                rest = [s for s in closest if s not in bead]
                said = _cover(
                    needed,
                    (self._at(cand, s, answer_lang, view) for s in bead + rest),
                    self._states,
                    keep=len(bead),
                )
                if said:
                    return said
        same = [c for c in pool if c.lang == answer_lang and c.official >= cand.official]
        seen = {c.sid for c in same}
        same += [c for c in self._elsewhere(cand, answer_lang, view) if c.sid not in seen]
        scored = sorted(((self.cosine(view, cand.sid, c.sid), c) for c in same), key=lambda x: -x[0])
        if not scored or scored[0][0] < self.answering.counterpart:
            return []  # nothing in ``answer_lang`` says it
        # the figures tell which of the close sentences says it; else the closest and what states the ones it drops
        near = [c for score, c in scored if score >= self.answering.twin_restates]
        whole = next((c for c in near if needed <= self._states(c)), None)
        return [whole] if whole is not None else _cover(needed, near, self._states)

    def _bead(
        self, cand: Candidate, entry: list[int], primary: int, lang: str, view: SentenceView
    ) -> list[int]:
        """The twin sentences that say ``cand`` (a 1-n bead): ``primary``, its translation; every other twin
        sentence close to it (``twin_restates``) whose own closest is ``cand``; and, as sentence aligners keep a
        bead contiguous, the close twin sentences next to those that translate nothing: no sentence of
        ``cand``'s entry has them as its closest ("主要原因是…维护成本…低" says the start of "Its main argument was
        maintenance cost: …", whose closest is the sentence after it, and is closest itself to "InfoQ saw
        performance as another reason", which "InfoQ 认为性能也是一个原因" translates)."""
        bar = self.answering.twin_restates
        near = {s for s in entry if s != primary and self.cosine(view, cand.sid, s) >= bar}
        own = self._entry_sentences(cand.row, cand.lang, view)
        taken = {self._twin_closest(cand, lang, view, sid=o) for o in own}
        bead = {primary} | {s for s in near if self._twin_closest(cand, cand.lang, view, sid=s) == cand.sid}
        free = near - taken
        while True:
            at = [entry.index(s) for s in bead]
            joining = {entry[i + d] for i in at for d in (-1, 1) if 0 <= i + d < len(entry)} & free - bead
            if not joining:
                break
            bead |= joining
        return [primary] + sorted(bead - {primary}, key=lambda s: -self.cosine(view, cand.sid, s))

    def _aligned(self, cand: Candidate, back: int, primary: int, lang: str, view: SentenceView) -> bool:
        """Whether ``primary``, the twin sentence closest to ``cand``, whose own closest is ``back``, translates
        it: each is the other's closest; or the twin says both in one sentence (an n-1 bead, as sentence
        aligners allow), ``back`` being ``cand``'s neighbour in its passage ("AWS 建议…改用 C5;" and "如果看重…GPU
        或 FPGA…" are one English sentence), or, further off in it, a sentence whose own closest is ``primary``
        too, which is close to ``cand`` (``twin_restates``): "把现有实例改成 C5 之前,必须先…装好 NVMe 和 ENA 驱动,
        并把 `/etc/fstab` 改成…" says "Before changing … install the NVMe and ENA drivers on it;" and, a sentence
        later, "Switch `/etc/fstab` entries…", and nothing else in its entry said the first (0.55)."""
        if back == cand.sid:
            return True
        own = view.of_row(cand.row)
        if back in own and cand.sid in own and abs(own.index(back) - own.index(cand.sid)) == 1:
            return True
        return (
            self.cosine(view, cand.sid, primary) >= self.answering.twin_restates
            and self._twin_closest(cand, lang, view, sid=back) == primary
        )

    def _elsewhere(self, cand: Candidate, lang: str, view: SentenceView) -> list[Candidate]:
        """The official sentences, in ``lang``, of the passages nearest to ``cand`` in the whole material: what
        says it in ``lang`` need not be among the question's candidates (an English question whose candidates
        are all Chinese quotes a Chinese comment on EC2's history, which an English FAQ entry tells too)."""
        rows = dict.fromkeys(  # each passage once, whichever multilingual embedder found it
            int(r)
            for m in self.multilingual
            for r in self.store.dense_search(
                m, view.vector(m, cand.sid), self.answering.elsewhere_passages
            ).rows
        )
        found: list[Candidate] = []
        for row in rows:
            chunk = self.store.chunk(row)
            if chunk.lang != lang or chunk.kind not in OFFICIAL_KINDS:
                continue
            for sid in view.of_row(row):
                part = self._at(replace(cand, official=True), sid, lang, view)
                if answers(self._text(part), self.answering):
                    found.append(part)
        return found

    def _at(self, cand: Candidate, sid: int, lang: str, view: SentenceView) -> Candidate:
        """``cand`` moved to sentence ``sid`` (in ``lang``), with that sentence's figures."""
        row, start, end = view.span(sid)
        moved = replace(cand, sid=sid, row=row, start=start, end=end, lang=lang)
        text = self._text(moved)
        return replace(moved, figures=figures(text, tokenize(text)))

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
