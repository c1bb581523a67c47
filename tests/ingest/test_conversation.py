"""Threads as conversations, checked on threads written for the tests by someone who did not see the
implementation (tests/fixtures/threads/README.md), on topics outside the corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingest.conversation import Turn, asks, is_correction, roles
from ingest.threads import parse_thread

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "threads"
LABELS = json.loads((FIXTURES / "labels.json").read_text(encoding="utf-8"))


def _parsed(thread_id: str) -> dict[str, tuple[bool, bool]]:
    """comment id -> (disputed, asks) as ingest sees it."""
    _, chunks = parse_thread(f"threads/{thread_id}", (FIXTURES / f"{thread_id}.json").read_text("utf-8"))
    out: dict[str, tuple[bool, bool]] = {}
    for c in chunks:
        disputed, asking = out.get(c.origin.comment_id, (False, False))
        out[c.origin.comment_id] = (disputed or bool(c.origin.disputed_by), asking or c.origin.asks)
    return out


def _scores() -> tuple[int, int, int]:
    tp = fp = fn = 0
    for thread_id, labels in LABELS.items():
        found = _parsed(thread_id)
        for cid, label in labels.items():
            got = found.get(cid, (False, False))[0]
            tp += got and label["disputed"]
            fp += got and not label["disputed"]
            fn += (not got) and label["disputed"]
    return tp, fp, fn


def test_disputed_claims_are_found_in_threads_written_for_the_tests():
    tp, fp, fn = _scores()
    precision, recall = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
    print(
        f"disputed comments: precision {precision:.2f}, recall {recall:.2f} ({tp} found, {fp} wrong, {fn} missed)"
    )
    assert recall >= 0.75 and precision >= 0.75


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("No, that's wrong: 16 still has md5.", True),
        ("Actually, the default changed in 15.", True),
        ("不对，1.29 并没有内置。", True),
        ("楼上说的有误，它不属于 F5。", True),
        ("+1, confirmed. No, that is right.", False),
        ("Thanks, that worked!", False),
        (
            "> 8 GB is the biggest\n\nThere is a 16 GB model now.",
            False,
        ),  # no correcting words: the quote alone
    ],
)
def test_correction_wording(body: str, expected: bool):
    assert is_correction(body) is expected


def test_a_no_that_answers_a_plain_question_corrects_nothing():
    turns = [
        Turn("p", "op", "Does the Pi 5 have a power button?", ""),
        Turn("a", "x", "No, but the Pi 5 does have a header for one.", "p"),
    ]
    r = roles(turns)
    assert asks(turns[0].body) and not r.disputed_by


def test_a_leading_question_is_corrected_like_a_claim():
    turns = [
        Turn("p", "op", "Upgrading notes.", ""),
        Turn("a", "x", "Isn't asyncio using all cores on 3.13 now?", "p"),
        Turn("b", "y", "It isn't: asyncio still runs one event loop per thread.", "a"),
    ]
    assert roles(turns).disputed_by == {"a": ("b",)}


def test_a_quoted_claim_names_what_is_corrected_even_several_comments_later():
    turns = [
        Turn("p", "op", "Python 3.13 thread.", ""),
        Turn("a", "x", "multiprocessing is deprecated in 3.13.", "p"),
        Turn("b", "y", "Free-threading is opt-in.", "p"),
        Turn(
            "c",
            "z",
            "> multiprocessing is deprecated in 3.13\n\nThat's not true, it is fully supported.",
            "b",
        ),
    ]
    r = roles(turns)
    assert r.disputed_by == {"a": ("c",)} and r.corrects == {"c": ("a",)}
