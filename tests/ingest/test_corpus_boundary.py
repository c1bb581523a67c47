"""Ingest reads regular files inside the corpus folder and nothing else, and every doc id is a safe URL path
segment that maps back to its file name."""

from __future__ import annotations

import os
import threading
from pathlib import Path, PurePosixPath

from hypothesis import given
from hypothesis import strategies as st

from ingest import discover, load_corpus
from ingest.ids import doc_id_for, safe_segment, source_path

FAQ = "---\ntitle: T\nlang: en\ndate: 2017-11-06\n---\n\n## Q?\n\nAn answer.\n\nSource: X, https://x.test/a, 2017-11-06\n"


def _corpus(root: Path) -> Path:
    (root / "faq").mkdir(parents=True)
    (root / "faq" / "good.en.md").write_text(FAQ, encoding="utf-8")
    return root


def test_a_symlink_out_of_the_corpus_is_reported_and_not_read(tmp_path: Path) -> None:
    secret = tmp_path / "outside" / "passwd"
    secret.parent.mkdir()
    secret.write_text(FAQ.replace("An answer.", "root:x:0:0:secret"), encoding="utf-8")
    root = _corpus(tmp_path / "corpus")
    (root / "faq" / "passwd.md").symlink_to(secret)
    (root / "faq" / "etc.md").symlink_to("/etc/passwd")
    (root / "escape").symlink_to(secret.parent, target_is_directory=True)
    corpus = load_corpus(root)
    assert [p.document.doc_id for p in corpus.parsed] == ["faq/good.en"]
    reasons = {p.path: p.reason for p in corpus.problems}
    assert "outside the corpus" in reasons["faq/passwd.md"]
    assert "outside the corpus" in reasons["faq/etc.md"]
    assert "outside the corpus" in reasons["escape"]
    assert all("secret" not in p.document.text for p in corpus.parsed)


def test_a_symlink_inside_the_corpus_is_read_and_a_linked_folder_is_not_followed(tmp_path: Path) -> None:
    root = _corpus(tmp_path / "corpus")
    (root / "faq" / "alias.en.md").symlink_to("good.en.md")
    (root / "loop").symlink_to(root, target_is_directory=True)
    (root / "faq" / "dangling.md").symlink_to(root / "nowhere.md")
    corpus = load_corpus(root)
    assert sorted(p.document.doc_id for p in corpus.parsed) == ["faq/alias.en", "faq/good.en"]
    reasons = {p.path: p.reason for p in corpus.problems}
    assert "not followed" in reasons["loop"]
    assert "broken symbolic link" in reasons["faq/dangling.md"]


def test_a_fifo_is_skipped_without_blocking(tmp_path: Path) -> None:
    root = _corpus(tmp_path / "corpus")
    os.mkfifo(root / "faq" / "pipe.md")
    result: list = []
    worker = threading.Thread(target=lambda: result.append(discover(root)), daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert result, "discover blocked on a FIFO"
    sources, problems = result[0]
    assert [s.doc_id for s in sources] == ["faq/good.en"]
    assert [(p.path, p.reason) for p in problems] == [("faq/pipe.md", "not a regular file, skipped")]


def test_a_file_swapped_for_an_outside_link_after_discovery_is_not_read(tmp_path: Path) -> None:
    root = _corpus(tmp_path / "corpus")
    outside = tmp_path / "secret.md"
    outside.write_text(FAQ.replace("An answer.", "the secret"), encoding="utf-8")
    sources, _ = discover(root)
    (root / "faq" / "good.en.md").unlink()
    (root / "faq" / "good.en.md").symlink_to(outside)
    from ingest import parse_source
    from ingest.errors import IngestError

    try:
        parse_source(sources[0])
    except IngestError as exc:
        assert "outside the corpus" in str(exc)
    else:
        raise AssertionError("read a file outside the corpus")


def test_unsafe_file_names_get_safe_reversible_ids(tmp_path: Path) -> None:
    root = _corpus(tmp_path / "corpus")
    for name in ("odd\nname.en.md", "my notes?.en.md", "50%#off.en.md", "迁移指南.zh.md", "a~b.en.md"):
        (root / "faq" / name).write_text(FAQ, encoding="utf-8")
    corpus = load_corpus(root)
    assert not corpus.problems
    ids = sorted(p.document.doc_id for p in corpus.parsed)
    assert ids == [
        "faq/50~25~23off.en",
        "faq/a~7Eb.en",
        "faq/good.en",
        "faq/my~20notes~3F.en",
        "faq/odd~0Aname.en",
        "faq/迁移指南.zh",
    ]
    for parsed in corpus.parsed:
        rel = parsed.source.path.relative_to(root)
        assert source_path(parsed.document.doc_id) == PurePosixPath(rel.with_suffix(""))


def test_problem_lines_stay_on_one_line(tmp_path: Path) -> None:
    root = _corpus(tmp_path / "corpus")
    (root / "faq" / "bad\nname.pdf").write_bytes(b"%PDF")
    (problem,) = load_corpus(root).problems
    assert problem.path == "faq/bad\nname.pdf" and "\n" not in str(problem)


@given(
    st.lists(
        st.text(min_size=1, max_size=12).filter(lambda s: "/" not in s and "\0" not in s and s != "."),
        max_size=4,
    )
)
def test_ids_are_url_safe_and_reversible(parts: list[str]) -> None:
    rel = PurePosixPath(*parts, "leaf.md") if parts else PurePosixPath("leaf.md")
    doc_id = doc_id_for(rel)
    for segment in doc_id.split("/"):
        assert segment not in ("", ".", "..")
        assert all(ch.isalnum() and ch.isprintable() or ch in "-_.~" for ch in segment), segment
    assert source_path(doc_id) == rel.with_suffix("")


def test_safe_names_are_their_own_id() -> None:
    assert safe_segment("c5-migration.en") == "c5-migration.en"
    assert safe_segment("..") == "~2E~2E"
