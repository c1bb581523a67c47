"""`python -m evals.open_domain`: answering outside the C5 material, end to end through the product.

Issue 14's open-domain check, rebuilt from public data: XQuAD's parallel English and Chinese encyclopedia
paragraphs (``../shared/bench/xquad``, read in place) are written as articles, ingested the way ``kbq
ingest`` does with the shipped models, and third-party questions are asked through ``KnowledgeBase.ask``
with the shipped calibration (fitted on the C5 golden ``tune`` split: nothing here is tuned on XQuAD).

Three set-ups:

- ``both``: the English and the Chinese paragraphs indexed; English and Chinese questions. Is the answer
  quoted in the question's language (every citation), and is the question's paragraph (or its twin) quoted?
- ``zh-only``: the Chinese paragraphs alone; English questions. Is the question's paragraph quoted, or
  is the question abstained on?
- ``half``: a fixed half of the English paragraphs (by id hash); English questions, of which those whose
  paragraph is left out should be abstained on (another paragraph of the same article is often near): the
  abstention precision and recall that the other set-ups, where every question is answerable, cannot show.

XQuAD in BEIR layout carries paragraph judgements, not answer spans, so "gold paragraph quoted" bounds the
check's "gold span in the answer" from above. The same questions (a fixed sample by id hash, ``--questions``
per language) are asked in every set-up.

    python -m evals.open_domain                  # 150 questions per language; prints a table
    python -m evals.open_domain --questions 40   # quicker
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from evals.beir import find_bench, half, load_beir, subsample
from kb.config import Settings
from kb.knowledge import KnowledgeBase
from kb.types import Answer

QUESTIONS = 150
# set-up -> the paragraph languages indexed, and whether only a fixed half of the paragraphs is
SETUPS = {"both": (("en", "zh"), False), "zh-only": (("zh",), False), "half": (("en",), True)}


@dataclass(frozen=True)
class Paragraphs:
    """The parallel paragraphs, and each question's paragraph in either language (XQuAD ids are parallel)."""

    text: Mapping[str, Mapping[str, str]]  # lang -> paragraph id -> text
    gold: Mapping[str, Mapping[str, str]]  # lang -> question id -> its paragraph id in that language
    questions: Mapping[str, Mapping[str, str]]  # lang -> question id -> question


def load(bench: Path) -> Paragraphs:
    en = load_beir(bench / "xquad" / "en", split="validation")
    zh = load_beir(bench / "xquad" / "zh", split="validation")
    en2zh = load_beir(bench / "xquad" / "en2zh", split="validation")

    def only(qrels: Mapping[str, Mapping[str, int]]) -> dict[str, str]:
        return {q: next(iter(docs)) for q, docs in qrels.items() if docs}

    return Paragraphs(
        text={
            "en": dict(zip(en.doc_ids, en.texts, strict=True)),
            "zh": dict(zip(zh.doc_ids, zh.texts, strict=True)),
        },
        gold={"en": only(en.qrels), "zh": only(en2zh.qrels) | only(zh.qrels)},
        questions={"en": en.queries, "zh": zh.queries},
    )


def write_corpus(
    paragraphs: Paragraphs, langs: Sequence[str], folder: Path, keep: Collection[str] | None = None
) -> dict[str, str]:
    """Each paragraph (of ``keep`` only, when given) as an article ``article/xquad-<n>.<lang>.md``;
    returns paragraph id -> doc id."""
    (folder / "article").mkdir(parents=True, exist_ok=True)
    doc_ids = {}
    for lang in langs:
        for n, (pid, text) in enumerate(sorted(paragraphs.text[lang].items())):
            if keep is not None and pid not in keep:
                continue
            name = f"xquad-{n:03d}.{lang}"
            title = f"XQuAD paragraph {n}" if lang == "en" else f"XQuAD 段落 {n}"
            front = f'---\ntitle: "{title}"\nlang: {lang}\n---\n\n'
            (folder / "article" / f"{name}.md").write_text(front + text.strip() + "\n", encoding="utf-8")
            doc_ids[pid] = f"article/{name}"
    return doc_ids


HEADER = (
    "| set-up | questions (answerable + not) | answered (of answerable) | quoted in the question's language "
    "(of answered) | gold paragraph quoted (of answerable) | abstention precision | abstention recall |\n"
    "|---|---:|---:|---:|---:|---:|---:|"
)


@dataclass
class Tally:
    asked: int = 0  # answerable: the question's paragraph is indexed
    answered: int = 0
    in_question_lang: int = 0  # answered, and every citation in the question's language
    gold_quoted: int = 0  # answered, and some citation from the question's paragraph (either language)
    unanswerable: int = 0  # the question's paragraph is not indexed
    abstained_right: int = 0  # abstained on an unanswerable question
    answered_wrong: int = 0  # answered an unanswerable question

    def row(self, name: str) -> str:
        def share(k: int, n: int) -> str:
            return f"{k / n:.2f} ({k}/{n})" if n else "–"

        abstained = self.asked - self.answered + self.abstained_right
        return (
            f"| {name} | {self.asked} + {self.unanswerable} | {share(self.answered, self.asked)} "
            f"| {share(self.in_question_lang, self.answered)} | {share(self.gold_quoted, self.asked)} "
            f"| {share(self.abstained_right, abstained) if self.unanswerable else '–'} "
            f"| {share(self.abstained_right, self.unanswerable)} |"
        )


def judge(answer: Answer, lang: str, gold_docs: set[str], tally: Tally) -> None:
    if not gold_docs:
        tally.unanswerable += 1
        tally.abstained_right += answer.abstained
        tally.answered_wrong += not answer.abstained
        return
    tally.asked += 1
    if answer.abstained:
        return
    tally.answered += 1
    tally.in_question_lang += all(c.lang == lang for c in answer.citations)
    tally.gold_quoted += any(c.doc_id in gold_docs for c in answer.citations)


def run_setup(
    paragraphs: Paragraphs, setup: str, asks: Mapping[str, Sequence[str]], workdir: Path
) -> dict[str, Tally]:
    """Index the set-up's paragraphs, ask the questions, tally per question language."""
    folder = workdir / setup
    langs, halved = SETUPS[setup]
    keep = {p for lang in langs for p in half(paragraphs.text[lang], dev=True)} if halved else None
    doc_ids = write_corpus(paragraphs, langs, folder / "corpus", keep)
    settings = Settings(index_dir=folder / "index", corpus_dir=folder / "corpus")
    from service.indexing import ingest  # the product's own ingest path, as `kbq ingest`

    started = time.perf_counter()
    report, problems = ingest(settings)
    if problems:
        raise SystemExit(f"{setup}: {len(problems)} paragraphs failed to ingest: {problems[:3]}")
    print(
        f"{setup}: {len(report.added)} paragraphs ingested in {time.perf_counter() - started:.0f} s",
        flush=True,
    )
    kb = KnowledgeBase.open(settings)
    tallies: dict[str, Tally] = {}
    for lang, qids in asks.items():
        tally = tallies.setdefault(lang, Tally())
        for qid in qids:
            gold = {
                doc_ids[p]
                for p in (paragraphs.gold["en"].get(qid), paragraphs.gold["zh"].get(qid))
                if p in doc_ids
            }
            judge(kb.ask(paragraphs.questions[lang][qid]), lang, gold, tally)
    return tallies


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m evals.open_domain", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bench", help="benchmark folder (default ../shared/bench)")
    parser.add_argument("--questions", type=int, default=QUESTIONS, help="questions per language")
    parser.add_argument(
        "--workdir", help="keep the corpora and indexes here (ingest is incremental: a rerun reuses them)"
    )
    args = parser.parse_args(argv)
    paragraphs = load(find_bench(args.bench))
    both = [
        q
        for q in paragraphs.questions["en"]
        if q in paragraphs.questions["zh"] and q in paragraphs.gold["zh"]
    ]
    sample = subsample(both, args.questions)
    rows = []
    with tempfile.TemporaryDirectory(prefix="kbq-open-domain-") as tmp:
        workdir = Path(args.workdir or tmp)
        tallies = run_setup(paragraphs, "both", {"en": sample, "zh": sample}, workdir)
        rows += [
            tallies["en"].row("both indexed, English questions"),
            tallies["zh"].row("both indexed, Chinese questions"),
        ]
        tallies = run_setup(paragraphs, "zh-only", {"en": sample}, workdir)
        rows.append(tallies["en"].row("Chinese only, English questions"))
        tallies = run_setup(paragraphs, "half", {"en": sample}, workdir)
        rows.append(tallies["en"].row("half the English paragraphs, English questions"))
    print()
    print(HEADER)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
