"""Quality gate: the golden-set metrics may not drop below the baseline recorded in evals/."""

from __future__ import annotations

import json

import pytest

from evals.golden import load_golden, relevant_chunks
from evals.runner import BASELINE, by_language, check_baseline, run


@pytest.fixture(scope="module")
def metrics(kb):
    return by_language(run(kb, load_golden()))


def test_golden_set_is_well_formed(kb):
    items = load_golden()
    assert len(items) >= 120
    assert sum(not i.answerable for i in items) >= 20
    assert {i.lang for i in items} == {"en", "zh"}
    assert sum("xling" in i.tags and i.lang == "en" for i in items) >= 10
    assert sum("xling" in i.tags and i.lang == "zh" for i in items) >= 10
    for item in items:
        if item.answerable:
            assert relevant_chunks(item, kb.index.documents, kb.index.chunks), item.id


def test_citations_are_always_valid(metrics):
    assert all(m["citation_validity"] == 1.0 for m in metrics.values())


def test_no_metric_drops_below_the_recorded_baseline(metrics):
    baseline = json.loads(BASELINE.read_text(encoding="utf-8"))
    assert check_baseline(metrics, baseline) == []
