"""Quality gate: the golden-set metrics may not drop below the baseline recorded in evals/, no answer may
repeat a corrected claim, and the set keeps the shape the evaluation discipline needs."""

from __future__ import annotations

import json

import pytest

from evals.golden import SPLITS, Snapshot, load_golden, relevant_chunks
from evals.runner import BASELINE, by_group, check_baseline, run


@pytest.fixture(scope="module")
def metrics(kb):
    return by_group(run(kb, load_golden()))


def test_golden_set_is_well_formed(kb):
    items = load_golden()
    assert len(items) >= 450 and len({i.id for i in items}) == len(items)
    assert {i.split for i in items} == set(SPLITS)
    assert sum(i.split == "test" for i in items) >= 150
    assert sum(not i.answerable for i in items) >= 80
    assert sum("misinfo" in i.tags for i in items) >= 40
    assert sum("xling" in i.tags for i in items) >= 60
    assert {i.lang for i in items} == {"en", "zh"}
    corpus = Snapshot.of(kb.store)
    for item in items:
        if item.answerable:
            assert item.must_contain, item.id
            assert relevant_chunks(item, corpus.documents, corpus.chunks), item.id
        if "misinfo" in item.tags:
            assert item.forbidden and item.answerable, item.id


def test_citations_are_always_valid(metrics):
    assert all(m["citation_validity"] == 1.0 for m in metrics.values())


def test_no_answer_repeats_a_corrected_claim(metrics):
    assert all(m["forbidden"] == 0 for m in metrics.values())


def test_no_metric_drops_below_the_recorded_baseline(metrics):
    baseline = json.loads(BASELINE.read_text(encoding="utf-8"))
    assert check_baseline(metrics, baseline) == []
