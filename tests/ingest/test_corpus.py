"""The real corpus parses cleanly, keeps the article verbatim, and every chunk span is exact."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from ingest import load_corpus
from tests.conftest import CORPUS, MATERIAL


@pytest.fixture(scope="module")
def corpus():
    return load_corpus(CORPUS)


@pytest.fixture(scope="module")
def docs(corpus):
    return {p.document.doc_id: p for p in corpus.parsed}


def test_real_corpus_has_no_problems_and_all_kinds(corpus):
    assert corpus.problems == []
    kinds = Counter(p.document.kind for p in corpus.parsed)
    assert kinds["article"] >= 1 and kinds["faq"] >= 4 and kinds["thread"] >= 4


def test_every_chunk_span_indexes_its_document_text(corpus):
    seen_ids = set()
    for parsed in corpus.parsed:
        for chunk in parsed.chunks:
            assert parsed.document.text[chunk.start : chunk.end] == chunk.text
            assert chunk.text.strip() == chunk.text and chunk.text
            assert chunk.chunk_id not in seen_ids
            seen_ids.add(chunk.chunk_id)


def test_article_keeps_every_body_line_verbatim(docs):
    source = (MATERIAL / "article-aws-kvm-infoq.zh.txt").read_text(encoding="utf-8").splitlines()
    body = source[source.index("by 杨赛") + 1 :]
    article = docs["article/aws-kvm-infoq.zh"].document
    assert article.title == "AWS正式把KVM投入使用 你需要知道些什么?"
    assert article.author == "杨赛" and article.lang == "zh"
    assert article.url == "https://www.infoq.cn/news/2017/11/aws-kvm-what-to-know"
    for line in filter(str.strip, body):
        assert line in article.text, line
    assert "QQ阅读" not in article.text


def test_article_chunks_carry_heading_paths_and_stay_small(docs):
    chunks = docs["article/aws-kvm-infoq.zh"].chunks
    assert {c.section for c in chunks} >= {"关于Xen与KVM", "AWS的用户需要知道什么?"}
    assert all(len(c.text) <= 400 for c in chunks)
    # indexed under publication, title and heading path, so "what did InfoQ say about …" finds it
    assert all(c.context.startswith("InfoQ 中文站 · AWS正式把KVM投入使用") for c in chunks)
    assert any(c.context.endswith("› 关于Xen与KVM") or c.context.endswith(" · 关于Xen与KVM") for c in chunks)


def test_faq_entries_are_question_and_answer_with_source_metadata(docs):
    faq_chunks = [c for p in docs.values() if p.document.kind == "faq" for c in p.chunks]
    questions = {c.section for c in faq_chunks}
    assert 150 <= len(questions) <= 200  # every entry in English and Chinese
    zh = {c.section for c in faq_chunks if c.lang == "zh"}
    assert len(zh) >= 30
    for chunk in faq_chunks:
        assert chunk.text.startswith(chunk.section) or chunk.context == chunk.section
        assert chunk.origin.date, chunk.section
        assert "Source:" not in chunk.text and "来源:" not in chunk.text


def test_threads_have_real_reddit_shape_and_depth(docs):
    threads = [p for p in docs.values() if p.document.kind == "thread"]
    assert len(threads) >= 4
    assert any(p.document.lang == "zh" for p in threads)
    for parsed in threads:
        raw = json.loads(parsed.source.path.read_text(encoding="utf-8"))
        assert raw[0]["data"]["children"][0]["kind"] == "t3"
        comments = [c for c in parsed.chunks if c.origin.depth >= 0]  # the post is depth -1
        assert 12 <= len(comments) <= 40
        assert max(c.origin.depth for c in comments) >= 3
        for c in comments:
            assert (c.origin.url or "").startswith("https://www.reddit.com/")
            if c.origin.depth > 0:
                assert c.origin.parent_id.startswith("t1_") and c.context
