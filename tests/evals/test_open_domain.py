"""The open-domain eval's parts that need no model: the corpus it writes is what `kbq ingest` reads, and
its tallies count answering and abstention as the README table says."""

from __future__ import annotations

from pathlib import Path

from evals.open_domain import Paragraphs, Tally, judge, write_corpus
from ingest import discover, parse_source
from kb.types import Answer, Citation

PARAGRAPHS = Paragraphs(
    text={
        "en": {"p1": "The Panthers scored 24 points.", "p2": "Denver won."},
        "zh": {"z1": "黑豹队得了 24 分。"},
    },
    gold={"en": {"q1": "p1"}, "zh": {"q1": "z1"}},
    questions={"en": {"q1": "How many points?"}, "zh": {"q1": "得了几分?"}},
)


def test_the_paragraphs_are_written_as_articles_that_ingest_reads_in_their_language(tmp_path: Path) -> None:
    doc_ids = write_corpus(PARAGRAPHS, ["en", "zh"], tmp_path, keep={"p1", "z1"})
    sources, problems = discover(tmp_path)
    assert not problems and sorted(s.doc_id for s in sources) == sorted(doc_ids.values())
    parsed = {s.doc_id: parse_source(s).document for s in sources}
    assert parsed[doc_ids["p1"]].lang == "en" and parsed[doc_ids["z1"]].lang == "zh"
    assert "The Panthers scored 24 points." in parsed[doc_ids["p1"]].text
    assert "p2" not in doc_ids  # left out


def _answer(abstained: bool, *cited: tuple[str, str]) -> Answer:
    citations = tuple(
        Citation(n, f"c{n}", doc, "article", "t", "", None, None, None, lang, "q", 0, 1, 1.0)
        for n, (doc, lang) in enumerate(cited, 1)
    )
    return Answer("id", "q", "text", abstained, 0.5, citations, "en")


def test_the_tally_counts_answers_languages_gold_paragraphs_and_abstentions() -> None:
    tally = Tally()
    judge(_answer(False, ("a/p1", "en")), "en", {"a/p1"}, tally)  # right paragraph, English
    judge(_answer(False, ("a/z9", "zh")), "en", {"a/p2"}, tally)  # another paragraph, Chinese
    judge(_answer(True), "en", {"a/p3"}, tally)  # abstained on an answerable one
    judge(_answer(True), "en", set(), tally)  # abstained on one whose paragraph is not indexed
    judge(_answer(False, ("a/p1", "en")), "en", set(), tally)  # answered one it should not have
    assert (tally.asked, tally.answered, tally.in_question_lang, tally.gold_quoted) == (3, 2, 1, 1)
    assert (tally.unanswerable, tally.abstained_right, tally.answered_wrong) == (2, 1, 1)
    assert tally.row("x") == "| x | 3 + 2 | 0.67 (2/3) | 0.50 (1/2) | 0.33 (1/3) | 0.50 (1/2) | 0.50 (1/2) |"
