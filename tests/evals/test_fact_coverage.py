"""Every fact the fact sheet marks as verified ([V] or [V-2]) has at least one FAQ entry."""

from __future__ import annotations

import json
import re

import pytest

from ingest import load_corpus
from tests.conftest import CORPUS, MATERIAL

COVERAGE = CORPUS.parent / "evals" / "coverage"
FACT = re.compile(r"^\s*- \[(?P<id>[A-Z]+\d+)\](?P<rest>.*)$")


def verified_fact_ids() -> set[str]:
    ids = set()
    lines = (MATERIAL / "facts.md").read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        m = FACT.match(line)
        if not m:
            continue
        block = [m.group("rest")]
        for follow in lines[i + 1 :]:  # a fact may continue on indented sub-bullets
            if FACT.match(follow) or not follow.startswith("  "):
                break
            block.append(follow)
        tags = set(re.findall(r"\[(V|V-2|SEC|UNVERIFIED[^\]]*)\]", " ".join(block)))
        if tags & {"V", "V-2"}:
            ids.add(m.group("id"))
    return ids


@pytest.fixture(scope="module")
def coverage() -> dict[str, list[str]]:
    merged: dict[str, list[str]] = {}
    for path in sorted(COVERAGE.glob("faq-*.json")):
        for fact, entries in json.loads(path.read_text(encoding="utf-8")).items():
            merged.setdefault(fact, []).extend(entries)
    return merged


def test_fact_sheet_parser_finds_the_verified_facts():
    ids = verified_fact_ids()
    assert {"L1", "L4", "B10", "CP5", "M2", "X2"} <= ids
    assert "PR3" not in ids and "H13" not in ids  # [UNVERIFIED] and [SEC]
    assert len(ids) > 100


def test_every_verified_fact_has_a_faq_entry(coverage):
    missing = sorted(verified_fact_ids() - {f for f, entries in coverage.items() if entries})
    assert not missing, f"facts without an FAQ entry: {missing}"


def test_every_coverage_entry_names_a_real_faq_question(coverage):
    questions = {
        f"{c.doc_id}#{c.section}"
        for p in load_corpus(CORPUS).parsed
        if p.document.kind == "faq"
        for c in p.chunks
    }
    unknown = sorted({e for entries in coverage.values() for e in entries} - questions)
    assert not unknown, unknown


def test_every_faq_entry_has_a_keyed_twin_in_the_other_language():
    """An FAQ page and its twin (``x.en`` / ``x.zh``) hold the same entry keys, so the answerer always
    finds an entry's counterpart in the asker's language."""
    keys: dict[str, dict[str, set[str]]] = {}
    for parsed in load_corpus(CORPUS).parsed:
        if parsed.document.kind != "faq":
            continue
        page, _, lang = parsed.document.doc_id.rpartition(".")
        entries = {c.section: c.origin.entry_key for c in parsed.chunks if c.section}
        unkeyed = sorted(q for q, key in entries.items() if not key)
        assert not unkeyed, f"{parsed.document.doc_id}: entries without a key: {unkeyed}"
        keys.setdefault(page, {})[lang] = set(entries.values())
    assert keys
    for page, by_lang in keys.items():
        assert set(by_lang) == {"en", "zh"}, f"{page} lacks a language: {sorted(by_lang)}"
        only_en, only_zh = by_lang["en"] - by_lang["zh"], by_lang["zh"] - by_lang["en"]
        assert not only_en and not only_zh, f"{page}: no twin for {sorted(only_en | only_zh)}"
