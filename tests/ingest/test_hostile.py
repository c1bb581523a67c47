"""Hostile and malformed input: reported per file, never a crash, never a lost neighbour."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from ingest import load_corpus
from ingest.article import parse_article
from ingest.faq import parse_faq
from ingest.threads import parse_thread
from kb.types import Provenance


def _comment(cid, body, author="someone", parent="t3_abc123", depth=0, replies=""):
    return {
        "kind": "t1",
        "data": {
            "id": cid,
            "name": f"t1_{cid}",
            "author": author,
            "body": body,
            "score": 3,
            "created_utc": 1510000000.0 + depth,
            "parent_id": parent,
            "depth": depth,
            "permalink": f"/r/aws/comments/abc123/x/{cid}/",
            "replies": replies,
        },
    }


def _listing(children):
    return {"kind": "Listing", "data": {"after": None, "before": None, "children": children}}


def reddit_export() -> list:
    deep = _comment("c4", "I concur &amp; agree &lt;3", parent="t1_c3", depth=3)
    deeper = _comment("c3", "[deleted]", author=None, parent="t1_c2", depth=2, replies=_listing([deep]))
    more = {
        "kind": "more",
        "data": {
            "count": 4,
            "id": "c9",
            "name": "t1_c9",
            "parent_id": "t1_c2",
            "depth": 2,
            "children": ["c9", "d1", "d2", "d3"],
        },
    }
    mid = _comment(
        "c2",
        "Use `nvme id-ctrl -v /dev/nvme1n1 2&gt;&amp;1`.",
        parent="t1_c1",
        depth=1,
        replies=_listing([deeper, more]),
    )
    top = _comment("c1", "Root is /dev/nvme0n1 on c5.18xlarge.", replies=_listing([mid]))
    removed = _comment("c5", "[removed]", author="[deleted]")
    post = {
        "kind": "t3",
        "data": {
            "id": "abc123",
            "title": "C5 &amp; NVMe",
            "selftext": "",
            "author": None,
            "score": 10,
            "created_utc": 1509999999.0,
            "permalink": "/r/aws/comments/abc123/x/",
        },
    }
    return [_listing([post]), _listing([top, removed])]


def test_real_shaped_reddit_export_parses_with_quirks():
    doc, chunks = parse_thread("threads/abc123", json.dumps(reddit_export()))
    assert doc.title == "C5 & NVMe" and doc.author == "[deleted]"
    bodies = [c.text for c in chunks]
    assert bodies == [
        "Root is /dev/nvme0n1 on c5.18xlarge.",
        "Use `nvme id-ctrl -v /dev/nvme1n1 2>&1`.",
        "I concur & agree <3",
    ]
    deep = chunks[-1]
    assert deep.origin.depth == 3 and deep.origin.parent_id == "t1_c3"
    assert deep.context == "Use `nvme id-ctrl -v /dev/nvme1n1 2>&1`." or deep.context.startswith("C5 & NVMe")
    assert chunks[1].context == "Root is /dev/nvme0n1 on c5.18xlarge."
    for c in chunks:
        assert doc.text[c.start : c.end] == c.text


def _write(root: Path, rel: str, data: bytes | str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))


GOOD_FAQ = "---\ntitle: T\nlang: en\ndate: 2017-11-06\n---\n\n## Q?\n\nAn answer.\n\nSource: X, https://x.test/a, 2017-11-06\n"


def test_bad_files_are_reported_and_good_ones_still_load(tmp_path):
    _write(tmp_path, "faq/good.en.md", GOOD_FAQ)
    _write(tmp_path, "faq/latin1.en.md", "---\ntitle: caf\xe9\n---\n\n## Q?\n\nA.\n".encode("latin-1"))
    _write(tmp_path, "faq/unclosed.en.md", "---\ntitle: x\n\n## Q?\n\nA.\n")
    _write(tmp_path, "faq/badyaml.en.md", "---\ntitle: [unclosed\n---\n\n## Q?\n\nA.\n")
    _write(tmp_path, "faq/list.en.md", "---\n- a\n- b\n---\n\n## Q?\n\nA.\n")
    _write(tmp_path, "faq/empty.en.md", "")
    _write(tmp_path, "threads/broken.json", '[{"kind": "Listing", ')
    _write(tmp_path, "threads/wrong.json", '{"kind": "t3"}')
    _write(tmp_path, "notes/readme.pdf", b"%PDF-1.4")
    corpus = load_corpus(tmp_path)
    assert [p.document.doc_id for p in corpus.parsed] == ["faq/good.en"]
    reasons = {p.path: p.reason for p in corpus.problems}
    assert "UTF-8" in reasons["faq/latin1.en.md"]
    assert "closing" in reasons["faq/unclosed.en.md"]
    assert "YAML" in reasons["faq/badyaml.en.md"]
    assert "mapping" in reasons["faq/list.en.md"]
    assert reasons["faq/empty.en.md"] == "empty file"
    assert "JSON" in reasons["threads/broken.json"]
    assert "Reddit" in reasons["threads/wrong.json"]
    assert "unsupported" in reasons["notes/readme.pdf"]
    good = corpus.parsed[0].chunks[0]
    assert good.origin == Provenance(
        url="https://x.test/a", date="2017-11-06", source_line="X, https://x.test/a, 2017-11-06"
    )


def test_missing_corpus_folder_is_a_problem_not_a_crash(tmp_path):
    corpus = load_corpus(tmp_path / "nope")
    assert corpus.parsed == [] and "does not exist" in corpus.problems[0].reason


def test_five_megabyte_article_chunks_within_limits():
    para = "C5 instances boot from EBS over NVMe. 现在已经推出C5的区域有三个。Use `/dev/nvme0n1` with 3.0 GHz.\n\n"
    raw = "---\ntitle: Big\nlang: en\n---\n\n## Section\n\n" + para * (5_000_000 // len(para.encode()))
    assert len(raw.encode()) > 4_900_000
    doc, chunks = parse_article("article/big", raw)
    assert len(chunks) > 1000
    assert all(len(c.text) <= 400 and doc.text[c.start : c.end] == c.text for c in chunks)


def test_mixed_language_text_splits_on_both_punctuations():
    raw = "---\ntitle: Mixed\n---\n\n" + (
        "AWS 在 11 月 6 日发布了 C5。It runs on a KVM-based hypervisor! 为什么? " * 20
    )
    doc, chunks = parse_article("article/mixed", raw)
    assert doc.lang == "zh"
    assert all(doc.text[c.start : c.end] == c.text for c in chunks)
    assert len(chunks) >= 2


markdown_text = st.text(alphabet=st.sampled_from(list("ab 。.!?\n#-*`|:C5é中文xyz0123")), max_size=600)


@settings(max_examples=150, deadline=None)
@given(body=markdown_text, kind=st.sampled_from(["article", "faq"]))
def test_chunk_spans_always_index_the_document_text(body, kind):
    raw = "---\ntitle: t\nlang: en\n---\n\n" + body
    parser = parse_article if kind == "article" else parse_faq
    try:
        doc, chunks = parser(f"{kind}/x", raw)
    except ValueError:
        return  # an empty body is reported, not chunked
    for c in chunks:
        assert doc.text[c.start : c.end] == c.text and c.text
