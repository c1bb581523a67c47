"""The checker that new golden questions pass before they join the set, on items written for the test."""

from __future__ import annotations

from pathlib import Path

import pytest

from evals.check_golden import check, main, problems
from evals.golden import Item, Snapshot, golden_files, load_golden

FAQ = "faq/c5-migration.en"
LAUNCH = "AWS released C5 instances on 6 November 2017"


def item(**fields) -> Item:  # type: ignore[no-untyped-def]
    base = dict(
        id="x-1",
        lang="en",
        question="when did c5 launch?",
        answerable=True,
        relevant=((FAQ, LAUNCH),),
        must_contain=(("6 November 2017",),),
        tags=(),
    )
    return Item(**{**base, **fields})


@pytest.fixture(scope="module")
def snapshot(kb) -> Snapshot:  # type: ignore[no-untyped-def]
    return Snapshot.of(kb.store)


def test_a_sound_item_has_no_problems(snapshot):
    assert problems(item(), snapshot) == []
    assert problems(item(answerable=False, relevant=(), must_contain=()), snapshot) == []


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"relevant": ((FAQ, "AWS released C5 on 6 Nov"),)}, "anchor not verbatim"),
        (
            {"relevant": ((FAQ, "Source: EC2 User Guide (awsdocs/amazon-ec2-user-guide), 2018-02-02"),)},
            "no quotable passage",
        ),
        ({"must_contain": (("6 November 2017",), ("Frankfurt",))}, "is in no relevant passage"),
        ({"forbidden": ("6 November 2017",)}, "also in official text"),
        ({"answerable": False}, "unanswerable item has no relevant"),
        ({"relevant": (), "must_contain": ()}, "answerable item needs"),
    ],
)
def test_each_kind_of_problem_is_reported(snapshot, fields, problem):
    found = problems(item(**fields), snapshot)
    assert any(problem in p for p in found), found


def test_duplicates_within_the_file_and_of_the_set_are_reported(snapshot):
    known = [item(id="old-1", question="When did C5 launch?")]
    found = check([item(), item(question="another question")], snapshot, known)
    assert found == ["x-1: question already in the golden set", "x-1: duplicate id"]


def test_the_command_exits_1_on_problems_and_says_why_a_file_is_unreadable(
    tmp_path: Path, capsys, monkeypatch, indexed_settings
):
    monkeypatch.setenv("KB_INDEX_DIR", str(indexed_settings.index_dir))
    bad = tmp_path / "new.jsonl"
    bad.write_text(
        '{"id": "x-1", "lang": "en", "question": "when?", "answerable": true, '
        '"relevant": [{"doc_id": "faq/c5-migration.en", "contains": "not in the FAQ at all"}], '
        '"must_contain": [["2017"]]}\n',
        encoding="utf-8",
    )
    with pytest.raises(SystemExit) as done:
        main([str(bad)])
    assert done.value.code == 1 and "anchor not verbatim" in capsys.readouterr().out
    bad.write_text("{not json\n", encoding="utf-8")
    with pytest.raises(SystemExit) as done:
        main([str(bad)])
    assert str(done.value.code).startswith("check_golden: cannot read")


def test_a_golden_directory_is_its_files_read_in_name_order(tmp_path: Path) -> None:
    line = '{{"id": "{0}", "lang": "en", "question": "q {0}", "answerable": false, "split": "{1}"}}\n'
    (tmp_path / "round10.jsonl").write_text(line.format("c", "tune"), encoding="utf-8")
    (tmp_path / "round02.jsonl").write_text(
        line.format("a", "test") + line.format("b", "tune"), encoding="utf-8"
    )
    (tmp_path / "notes.txt").write_text("not questions", encoding="utf-8")
    assert [p.name for p in golden_files(tmp_path)] == ["round02.jsonl", "round10.jsonl"]
    assert [i.id for i in load_golden(tmp_path)] == ["a", "b", "c"]
    assert [i.id for i in load_golden(tmp_path, split="tune")] == ["b", "c"]
    assert load_golden(tmp_path / "round10.jsonl")[0].id == "c"


def test_the_shipped_golden_set_is_split_into_files_a_repository_holds() -> None:
    files = golden_files()
    assert len(files) > 1 and all(f.stat().st_size < 1_000_000 for f in files)
    assert len({i.id for i in load_golden()}) == len(load_golden())
