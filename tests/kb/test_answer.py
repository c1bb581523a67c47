"""The answer contract: cited sentences that verify, honest abstention, official sources first."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace

import numpy as np
import pytest

from evals.adapter import candidate_vectors
from kb.answer import ABSTAIN, Answerer, InvalidQuestion
from kb.calibration import PORTABLE_FEATURES, Adapter, Calibration, CalibrationError
from kb.candidates import standout, with_corrections
from kb.citations import verify
from kb.compose import join, label
from kb.config import Settings
from kb.question import asking, named_langs, unmet, unmet_by
from kb.retrieve import Signals
from kb.store import SentenceRows, iter_chunks
from kb.text import code_terms, detect_lang, tokenize
from kb.tuning import ANSWERING
from kb.types import Hit

QUESTIONS = [
    "Which regions have C5?",
    "why KVM over Xen?",
    "换到 C5 后 fstab 要怎么改?",
    "How do I check that ENA is enabled?",
    "C5 的 NVMe 超时应该设成多少?",
    "Does the EC2 API change on C5?",
    "What is the capital of France?",
    "如何煮饺子?",
]


@pytest.mark.parametrize("question", QUESTIONS)
def test_every_marker_names_a_citation_and_every_quote_is_exact(kb, question):
    answer = kb.ask(question)
    numbers = {c.n for c in answer.citations}
    assert {int(n) for n in re.findall(r"\[(\d+)\]", answer.answer)} <= numbers
    for c in answer.citations:
        assert kb.document(c.doc_id).text[c.start : c.end] == c.quote
    assert 0.0 <= answer.confidence <= 1.0
    if not answer.abstained:
        assert answer.citations and "[1]" in answer.answer
        quoted = {(c.doc_id, c.start) for c in answer.citations}
        assert len(quoted) == len(answer.citations)  # each sentence quoted once


def test_answers_the_region_question_from_an_official_source(kb):
    answer = kb.ask("Which regions had C5 at launch?")
    assert not answer.abstained
    assert "Oregon" in answer.answer and answer.citations[0].source in ("faq", "article")


def test_a_question_in_traditional_characters_is_answered_as_in_simplified_ones(kb):
    traditional = kb.answerer.draft("C5 剛推出的時候有哪幾個區域可以開?")
    simple = kb.answerer.draft("C5 刚推出的时候有哪几个区域可以开?")
    assert [h.row for h in traditional.hits] == [h.row for h in simple.hits]
    assert kb.answerer.finish(traditional).answer == kb.answerer.finish(simple).answer


def test_abstains_in_the_question_language_with_nearest_passages(kb):
    en = kb.ask("What is the capital of France?")
    zh = kb.ask("如何煮饺子?")
    assert en.abstained and en.answer == ABSTAIN["en"]
    assert zh.abstained and zh.answer == ABSTAIN["zh"]
    assert not re.search(r"\[\d+\]", en.answer) and en.citations


def test_a_citation_that_does_not_match_its_document_fails_verification(kb):
    answer = kb.ask("Which regions had C5 at launch?")
    good = answer.citations[0]
    doc = kb.document(good.doc_id)
    assert verify(good, doc)
    assert not verify(replace(good, start=good.start + 1), doc)
    assert not verify(replace(good, quote=good.quote + "x"), doc)
    assert not verify(good, kb.document("faq/nope"))


def test_thread_sentences_are_labelled_as_community_reports(kb):
    draft = kb.answerer.draft(
        "How much did worker job time drop after moving the fleet to c5?", kinds=["thread"]
    )
    always = replace(kb.answerer.calibration, threshold=0.0)
    answer = kb.answerer.finish(draft, always)
    assert not answer.abstained and all(c.community for c in answer.citations)
    assert answer.answer.startswith(label("en", "thread", "en"))


def test_official_source_wins_over_a_wrong_thread_claim(kb):
    answer = kb.ask("Is C5 available in every region?")
    assert not answer.abstained
    assert answer.citations[0].source in ("faq", "article")


def test_official_sentences_lead_and_community_reports_follow(kb):
    draft = kb.answerer.draft("听说 C5 比 C4 便宜一半,真的假的?")
    always = replace(kb.answerer.calibration, threshold=0.0)
    answer = kb.answerer.finish(draft, always)
    kinds = [c.community for c in answer.citations]
    assert kinds == sorted(kinds), "a community report came before an official sentence"
    assert any(not c.community for c in answer.citations)


def test_a_reply_to_a_comment_that_says_what_the_question_asks_is_its_answer(kb):
    question = "Would setting --sriov-net-support simple satisfy the c5 enhanced networking check?"
    draft = kb.answerer.draft(question, kinds=["thread"])
    by_reply = {c.row: c.features.reply for c in draft.candidates}
    rows = {c.row: kb.store.chunk(c.row) for c in draft.candidates}
    correction = next(r for r, ch in rows.items() if "--ena-support" in ch.text)
    assert by_reply[correction] > 0.5  # it replies to "Just set `--sriov-net-support simple`"
    assert all(by_reply[r] == 0.0 for r, ch in rows.items() if not ch.origin.parent_id)
    answer = kb.ask(question)
    assert not answer.abstained and "ena-support" in answer.answer


def test_a_cited_block_stands_on_its_own_lines_between_sentences():
    table = "Limits:\n\n| Size | IOPS |\n| --- | --- |\n| c4.large | 4,000 | [1]"
    assert join(["First. [1]", "Second. [2]"], " ") == "First. [1] Second. [2]"
    assert join(["第一句。[1]", "第二句。[2]"], "") == "第一句。[1]第二句。[2]"
    assert join([table, "After. [2]"], " ") == f"{table}\n\nAfter. [2]"
    assert join(["Before. [1]", table], " ") == f"Before. [1]\n\n{table}"


def test_sentences_of_one_passage_are_redundant_only_when_they_overlap(kb):
    draft = kb.answerer.draft("What value should nvme_core.io_timeout be set to for EBS volumes?")
    row = draft.hits[0].row
    same = [c for c in draft.candidates if c.row == row]
    other = next(c for c in draft.candidates if c.row != row)
    assert len(same) >= 2
    assert not kb.answerer._similar(draft.view, same[0], same[1])
    assert kb.answerer._similar(draft.view, same[0], same[0])
    assert kb.answerer._similar(draft.view, other, other)


def test_sentences_on_one_topic_with_different_figures_are_not_restatements(kb, monkeypatch):
    draft = kb.answerer.draft("C5 vs C4 最大规格 vcpu 内存 对比")
    per_vcpu = next(c for c in draft.candidates if "每个 vCPU 配 2 GiB" in _quote(kb, c))
    largest = next(c for c in draft.candidates if "72 个 vCPU 和 144 GiB" in _quote(kb, c))
    assert per_vcpu.row != largest.row
    vector = draft.view.vector
    models = kb.answerer.retriever.embedders
    close = max(float(vector(m, per_vcpu.sid) @ vector(m, largest.sid)) for m in models)
    # at a threshold their vectors pass, vectors alone would drop one as a restatement: each states figures the
    # other does not, so both stay
    strict = replace(ANSWERING, redundant=min(ANSWERING.redundant, close - 0.01))
    monkeypatch.setattr(kb.answerer, "answering", strict)
    assert not kb.answerer._similar(draft.view, largest, per_vcpu)


def test_a_sentence_that_only_drops_a_figure_restates_the_one_that_has_it(kb):
    question = "which regions have C5"
    draft = kb.answerer.draft(question)
    faq = next(c for c in draft.candidates if "in November 2017, C5 was available in only" in _quote(kb, c))
    comment = next(c for c in draft.candidates if "C5 is only in three regions right now" in _quote(kb, c))
    assert kb.answerer._similar(draft.view, comment, faq)
    assert not kb.answerer._similar(draft.view, faq, comment)  # the FAQ adds "2017"
    assert "C5 is only in three regions right now" not in kb.ask(question).answer


def test_a_figure_the_answer_states_already_makes_no_other_fact(kb):
    draft = kb.answerer.draft("哪些区域有 C5?")
    dated = next(c for c in draft.candidates if "C5 在 2017 年 11 月发布时可以按 On-Demand" in _quote(kb, c))
    plain = next(c for c in draft.candidates if _quote(kb, c).startswith("C5 发布时可以按 On-Demand"))
    assert not kb.answerer._similar(draft.view, dated, plain)  # alone, "2017" makes it another fact
    assert kb.answerer._similar(draft.view, dated, plain, frozenset(dated.figures))
    answer = kb.ask("哪些区域有 C5?").answer
    assert answer.count("On-Demand") <= 1  # how C5 could be bought, said once


def test_two_copies_of_a_command_differing_in_placeholder_ids_state_no_other_figure(kb):
    # the English FAQ's example uses i-1234567890abcdef0 and the Chinese one i-xxxxxxxx: not another fact
    draft = kb.answerer.draft("How do I turn on ENA support for an instance I already have?")
    blocks = [c for c in draft.candidates if "```" in _quote(kb, c) and "--ena-support" in _quote(kb, c)]
    english = next(c for c in blocks if "i-1234567890abcdef0" in _quote(kb, c))
    chinese = next(c for c in blocks if "i-xxxxxxxx" in _quote(kb, c))
    assert "ec2" in english.figures and not english.figures - chinese.figures


def test_a_sentence_that_drops_a_command_neither_restates_nor_translates_the_one_that_has_it(kb):
    # an English comment checks with `lsinitrd`, or on Ubuntu with `lsinitramfs`; a Chinese one with `lsinitrd`
    # alone: for a Chinese question about Ubuntu, it may not stand in for the English one
    question = "Ubuntu 上怎么确认 initrd 里已经有 nvme 模块?lsinitrd 是 dracut 那一套的吧"
    draft = kb.answerer.draft(question)
    english = next(c for c in draft.candidates if "`lsinitramfs" in _quote(kb, c))
    chinese = next(c for c in draft.candidates if "`lsinitrd | grep nvme` 检查一下" in _quote(kb, c))
    assert english.figures - chinese.figures >= code_terms("`lsinitramfs`")
    assert not kb.answerer._similar(draft.view, english, chinese)
    said = kb.answerer.realiser.counterpart(english, draft.candidates, "zh", draft.view)
    assert all("lsinitramfs" in _quote(kb, c) for c in said)


def test_a_twin_sentence_stands_in_only_for_the_sentence_it_translates(kb):
    # the Chinese entry on scripts that broke ends with the community's udev fix, which its English twin
    # (a list of the tools) does not say: no sentence of that twin may stand in for it
    draft = kb.answerer.draft("社区是怎么恢复 xvd 设备名的?", lang="en")
    fix = next(c for c in draft.candidates if c.lang == "zh" and "udev 规则配合" in _quote(kb, c))
    said = kb.answerer.realiser.counterpart(fix, draft.candidates, "en", draft.view)
    assert not said or any("udev" in _quote(kb, c) for c in said)


def test_a_twin_that_writes_code_as_words_translates_it(kb):
    """The English FAQ writes `UUID` and `LABEL` as code, its Chinese twin as words: the twin says the
    sentence all the same, so a Chinese answer quotes it instead of the English one."""
    draft = kb.answerer.draft("fstab 里能直接写 /dev/nvme1n1 吗?", lang="zh")
    english = next(c for c in draft.candidates if _quote(kb, c).startswith("`/etc/fstab` on C5"))
    said = kb.answerer.realiser.counterpart(english, draft.candidates, "zh", draft.view)
    assert said and all(c.lang == "zh" for c in said)
    assert "UUID 或 LABEL" in " ".join(_quote(kb, c) for c in said)


def test_the_next_sentence_is_weighed_against_its_closeness_to_those_chosen(kb):
    """A slightly weaker sentence on another point goes before a stronger one on the best one's point."""
    draft = kb.answerer.draft("Is the NVMe device order fixed, so fstab can name /dev/nvme1n1?")
    answerer, view = kb.answerer, draft.view
    best = next(c for c in draft.candidates if _quote(kb, c).startswith("`/etc/fstab` on C5"))
    others = sorted(
        (c for c in draft.candidates if c.sid != best.sid),
        key=lambda c: answerer.realiser.cosine(view, c.sid, best.sid),
    )
    far, close = others[0], others[-1]
    gap = answerer.realiser.cosine(view, close.sid, best.sid) - answerer.realiser.cosine(
        view, far.sid, best.sid
    )
    assert gap > 0.1
    rest = [(0.9, close), (0.9 - answerer.answering.diversity * gap / 2, far)]
    assert answerer._next(view, rest, [best], 1.0) == 1
    plain = Answerer(
        answerer.retriever, answerer.calibration, answering=replace(answerer.answering, diversity=0.0)
    )
    assert plain._next(view, rest, [best], 1.0) == 0


def test_an_answer_whose_official_sentences_are_in_its_language_is_written_in_it(kb):
    """The reader reads an answer's official sentences first (kb.answer orders them so), so they are what it
    is led by: a reply in the other language that ranked best beside them adds to the answer only while it
    does not make up most of it."""
    draft = kb.answerer.draft("Is C5 really half the price of C4?")
    reply = next(c for c in draft.candidates if _quote(kb, c).startswith("没有一半"))
    official = next(c for c in draft.candidates if c.official and c.lang == "en" and "25%" in _quote(kb, c))
    assert not reply.official and detect_lang(_quote(kb, reply) + " " + _quote(kb, official)) == "zh"
    said = kb.answerer.realiser.realise([reply, official], draft.candidates, "en", draft.view)
    assert [c.sid for c in said] == [official.sid]


@pytest.mark.parametrize(
    ("question", "lang", "quote", "restates"),
    [
        # the twin entry's closest sentence says it: drop it beside that sentence
        ("why KVM over Xen", "en", "主要原因是基于 KVM 的系统维护成本", True),
    ],
)
def test_a_sentence_left_in_the_other_language_goes_only_beside_its_restatement(
    kb, question, lang, quote, restates
):
    draft = kb.answerer.draft(question, lang=lang)
    realiser = kb.answerer.realiser
    cand = next(c for c in draft.candidates if quote in _quote(kb, c))
    closest = realiser._twin_closest(cand, lang, draft.view)
    assert closest is not None
    assert realiser._restates_twin(cand, lang, draft.view, {closest}) is restates


@pytest.mark.parametrize(
    ("question", "named"),
    [
        ("What title does the Chinese InfoQ article give Jeff Barr?", {"zh"}),
        ("in the chinese-language thread, what did the OP say?", {"zh"}),
        ("英文帖子里有人说过 RI 的事吗?", {"en"}),
        ("英語的 FAQ 怎麼說?", {"en"}),
        ("InfoQ 中文站的文章怎么看 Xen?", {"zh"}),
        ("we have customers in China: is C5 there yet?", set()),  # a country, not a language
        ("Which regions have C5?", set()),
    ],
)
def test_a_question_names_the_languages_it_asks_about(question, named):
    assert named_langs(question) == named


def test_a_sentence_asked_of_the_other_languages_material_is_quoted_as_it_is(kb):
    """The nearest English sentence to the article's "按AWS首席布道师Jeff Barr…" keeps the topic (Jeff Barr's 25%)
    and loses what was asked (his title): asked of the Chinese article, the article's sentence is quoted, and
    the sentences an FAQ twin says are still said in the asker's language."""
    question = "How does the Chinese InfoQ article describe Jeff Barr's job at AWS?"
    draft = kb.answerer.draft(question)
    realiser = kb.answerer.realiser
    article = (c for c in draft.candidates if kb.store.chunk(c.row).doc_id.startswith("article/"))
    title = next(c for c in article if "首席布道师" in _quote(kb, c))
    assert title.features.named_lang == 1.0
    assert all(c.features.named_lang == (c.lang == "zh") for c in draft.candidates)
    assert "首席布道师" not in " ".join(
        _quote(kb, c) for c in realiser.realise([title], draft.candidates, "en", draft.view)
    )
    said = realiser.realise([title], draft.candidates, "en", draft.view, named_langs(question))
    assert [c.sid for c in said] == [title.sid]
    faq = next(c for c in draft.candidates if c.lang == "zh" and kb.store.chunk(c.row).origin.entry_key)
    twin = realiser.realise([faq], draft.candidates, "en", draft.view, named_langs(question))
    assert twin and all(c.lang == "en" for c in twin)


def test_a_code_block_is_quoted_as_it_is_in_either_language(kb):
    draft = kb.answerer.draft("aws ec2 stop-instances 命令", lang="en")
    code = next(c for c in draft.candidates if c.lang == "zh" and "stop-instances" in _quote(kb, c))
    assert code.neutral
    said = kb.answerer.realiser.realise([code], draft.candidates, "en", draft.view)
    assert [(c.sid, c.lang) for c in said] == [(code.sid, "en")]  # quoted as it is, so without a label


def test_a_code_block_both_twins_hold_is_quoted_once(kb):
    draft = kb.answerer.draft("how do I check that I am on EC2 with dmidecode?", lang="en")
    blocks = [c for c in draft.candidates if _quote(kb, c).startswith("```\ncurl -s http://169.254.169.254")]
    assert {c.lang for c in blocks} == {"en", "zh"} and len({_quote(kb, c) for c in blocks}) == 1
    said = kb.answerer.realiser.realise(blocks, draft.candidates, "en", draft.view)
    assert len(said) == 1


_TWINS = {
    "en": """---
title: "Regions"
lang: en
---

## Where did C5 launch? {#regions}

C5 launched in three regions: N. Virginia, Oregon and Ireland. Their region codes are `us-east-1`, `us-west-2` and `eu-west-1`.

Source: a test, 2017-11-07

## What did C5 cost? {#price}

A c5.2xlarge cost less per hour than a c4.2xlarge did.

Source: a test, 2017-11-07

## Who should move to C5? {#advice}

AWS recommends C5 for workloads on C3 or C4, and GPU or FPGA instances where raw graphics performance counts.

Source: a test, 2017-11-07

## How do I know I am on EC2? {#detect}

The reliable way is to read the signed instance identity document. Checking the start of the system UUID is quick, but it can give false positives.

Source: a test, 2017-11-07
""",
    "zh": """---
title: "区域"
lang: zh
---

## C5 在哪里发布? {#regions}

C5 发布时只在三个区域提供:弗吉尼亚北部 (`us-east-1`)、俄勒冈 (`us-west-2`) 和爱尔兰 (`eu-west-1`)。

Source: a test, 2017-11-07

## C5 多少钱? {#price}

按需的 c5.2xlarge 每小时 $0.34,c4.2xlarge 每小时 $0.398,按小时算 C5 便宜约百分之十五,这还没有算上新处理器更快带来的好处。

Source: a test, 2017-11-07

## 谁应该换到 C5? {#advice}

AWS 建议运行在 C3 或 C4 上的工作负载改用 C5;如果看重纯粹的图形性能,则应考虑 GPU 或 FPGA 实例。

Source: a test, 2017-11-07

## 怎么判断自己在 EC2 上? {#detect}

最可靠的办法是读取带签名的实例身份文档,检查系统 UUID 的开头虽然快,却可能误判。

Source: a test, 2017-11-07
""",
}


def test_a_translation_says_every_figure_its_original_states(tmp_path):
    """A twin sentence that drops a figure the original states does not translate all of it: the twin's
    sentences that state the figure join it, and where none does the original is quoted, labelled. Two
    neighbouring sentences that the twin says in one are each translated by it, and one sentence that the
    twin says in two is translated by both."""
    from kb.knowledge import KnowledgeBase
    from service.indexing import ingest

    corpus = tmp_path / "corpus"
    (corpus / "faq").mkdir(parents=True)
    for lang, text in _TWINS.items():
        (corpus / "faq" / f"c5.{lang}.md").write_text(text, encoding="utf-8")
    settings = Settings(index_dir=tmp_path / "kbq" / "index", corpus_dir=corpus)
    _, problems = ingest(settings)
    assert not problems
    knowledge = KnowledgeBase.open(settings)
    answerer = knowledge.answerer

    def text(cand) -> str:
        return _quote(knowledge, cand)

    draft = answerer.draft("C5 在哪几个区域发布?", lang="en")
    codes = next(c for c in draft.candidates if "us-east-1" in text(c))
    said = answerer.realiser.counterpart(codes, draft.candidates, "en", draft.view)
    assert [c.lang for c in said] == ["en", "en"]
    assert "N. Virginia" in text(said[0]) and "us-east-1" in text(said[1])

    draft = answerer.draft("C5 每小时多少钱?", lang="en")
    prices = next(c for c in draft.candidates if "$0.34" in text(c))
    assert answerer.realiser.counterpart(prices, draft.candidates, "en", draft.view) == []
    assert [c.lang for c in answerer.realiser.realise([prices], draft.candidates, "en", draft.view)] == ["zh"]
    # quotes in the other language add to an answer led in its language, they do not make up most of it
    lead = next(c for c in draft.candidates if c.lang == "en" and "cost less" in text(c))
    assert detect_lang(text(lead) + " " + text(prices)) == "zh"
    said = answerer.realiser.realise([lead, prices], draft.candidates, "en", draft.view)
    assert [c.sid for c in said] == [lead.sid]

    # one English sentence says two Chinese ones: it translates each (a 2-1 bead)
    draft = answerer.draft("哪些工作负载应该换到 C5?", lang="en")
    halves = [c for c in draft.candidates if "C3 或 C4" in text(c) or "GPU 或 FPGA" in text(c)]
    assert len(halves) == 2
    for half in halves:
        said = answerer.realiser.counterpart(half, draft.candidates, "en", draft.view)
        assert [text(c)[:28] for c in said] == ["AWS recommends C5 for worklo"]

    # one Chinese sentence says two English ones, neither stating a figure: both translate it (a 1-2 bead)
    draft = answerer.draft("怎么判断是不是在 EC2 上?", lang="en")
    both = next(c for c in draft.candidates if "可能误判" in text(c))
    said = answerer.realiser.counterpart(both, draft.candidates, "en", draft.view)
    assert sorted(text(c)[:20] for c in said) == ["Checking the start o", "The reliable way is "]


def test_a_twin_sentence_that_says_two_sentences_apart_translates_each(kb):
    # "把现有实例改成 C5 之前,必须先…装好 NVMe 和 ENA 驱动,并把 `/etc/fstab` 改成…" says "Before changing … install
    # the NVMe and ENA drivers on it;" and, a sentence later, "Switch `/etc/fstab` entries…" (an n-1 bead that is
    # not contiguous): a Chinese answer quotes it for the first, not the English sentence
    draft = kb.answerer.draft("C5 的 ENA 要怎么开", lang="zh")
    english = next(c for c in draft.candidates if _quote(kb, c).startswith("Before changing an existing"))
    said = kb.answerer.realiser.counterpart(english, draft.candidates, "zh", draft.view)
    assert [_quote(kb, c)[:13] for c in said] == ["把现有实例改成 C5 之前"]


def test_a_sentence_one_language_says_in_three_is_translated_whole(kb):
    # "Its main argument was maintenance cost: Xen predates … while KVM, merged in 2007, …" is three sentences
    # of the Chinese twin; the first, which names the reason, is closest to another English sentence ("InfoQ saw
    # performance as another reason"), which has a translation of its own
    draft = kb.answerer.draft("AWS 为啥要从 Xen 换到 KVM?", lang="zh")
    view = draft.view
    english = next(c for c in draft.candidates if "Its main argument" in _quote(kb, c))
    said = [_quote(kb, c) for c in kb.answerer.realiser.counterpart(english, draft.candidates, "zh", view)]
    assert any("主要原因是基于 KVM 的系统维护成本" in s for s in said)
    assert any(s.startswith("Xen 设计之初") for s in said)
    assert any(s.startswith("KVM 在 2007 年") for s in said)
    # the translation counts as one sentence of the answer: the limit does not cut the reason off
    assert "维护成本" in kb.ask("AWS 为啥要从 Xen 换到 KVM?").answer


def _quote(kb, cand) -> str:
    return kb.store.document(kb.store.chunk(cand.row).doc_id).text[cand.start : cand.end]


@pytest.mark.parametrize(
    ("question", "missing"),
    [
        ("How many cores does the Graviton2 processor have?", 1.0),
        ("c6i.large 每小时多少钱?", 1.0),
        ("How many vCPUs does a c5.18xlarge have?", 0.0),
        ("C5 用的是什么处理器?", 0.0),
        ("KVM为什么比Xen好", 0.0),
        ("Nitro系统是什么", 0.0),
        ("Please explain the C5 launch", 0.0),
        ("用Terraform2怎么建 VPC", 1.0),
        ("Nitro 实例上 board_asset_tag 里存的是什么?", 0.0),  # written inside a longer path
        ("p3.16xlarge 有几块 GPU?", 1.0),  # its parts (p3, 16xlarge) alone do not count
        ("Is the timeout called nvme_core.io_timeout?", 0.0),
        # a story around the question names what it likes; only what it asks must be covered
        (
            "Our nightly pg_dump slows down after half an hour. What's the sustained EBS baseline of c5.xlarge?",
            0.0,
        ),
        ("We benchmarked c5.large against c4.large for a week. How many GPUs does a p3.16xlarge have?", 1.0),
        ("我们用 pg_dump 做备份,跑半小时就变慢。c5.xlarge 的 EBS 基准带宽是多少?", 0.0),
    ],
)
def test_a_question_naming_something_the_corpus_never_mentions_is_flagged(kb, question, missing):
    assert kb.answerer.draft(question).missing_name == missing


@pytest.mark.parametrize(
    ("question", "asked"),
    [
        ("Our pg_dump stalls on c5. What is the baseline?", "What is the baseline?"),
        (
            "c5 went live everywhere, right? so why can't we launch it in Tokyo",
            "c5 went live everywhere, right?",
        ),
        ("跑了一周 iperf3。单流能到多少？多流呢？", "单流能到多少？ 多流呢？"),
        ("What is the baseline?", "What is the baseline?"),
        ("ssm automation doc name xen to nitro readiness", "ssm automation doc name xen to nitro readiness"),
        ("We use pg_dump. It stalls.", "We use pg_dump. It stalls."),  # nothing asks: all of it counts
    ],
)
def test_what_a_question_asks_is_its_sentences_that_end_in_a_question_mark(question, asked):
    assert asking(question) == asked


@pytest.mark.parametrize(
    ("question", "answer", "missing"),
    [
        ("link to the nitro hypervisor source repo?", "AWS named it the Nitro Hypervisor.", True),
        ("which issue was it? link pls", "Chef Ohai broke on C5 (`chef/ohai#1082`).", False),
        ("how many percent cheaper than c4 is c5?", "It is about 15% cheaper.", False),
        ("C5 每小时便宜百分之多少?", "按小时单价大概便宜 15% 左右。", False),
        ("C5 每小时便宜百分之多少?", "C5 比 C4 便宜。", True),
        ("min ena driver version for c5?", "Install the ENA driver before you move to C5.", True),
        ("which kernel version sets the timeout for me", "Kernel 4.15 and later take 4294967295.", False),
        ("C5 记在哪个 API 版本?", "EC2 API 版本 2016-11-15 的文档历史记录了 C5。", False),
        ("c5.large price per hour?", "c5.2xlarge costs $0.34 per hour.", False),
        ("when did C5 reach Frankfurt?", "C5 launched in three regions.", True),
        ("why KVM over Xen?", "KVM is simpler to maintain.", False),  # asks for none of these
    ],
)
def test_a_question_asking_for_a_kind_of_fact_is_unmet_by_an_answer_without_one(question, answer, missing):
    assert unmet(question, answer) is missing


@pytest.mark.parametrize(
    ("question", "sentences", "missing"),
    [
        (
            "c5.9xlarge price per hour?",
            ["c5.2xlarge costs $0.34 per hour.", "c5.9xlarge has 36 vCPUs."],
            True,
        ),
        ("c5.2xlarge price per hour?", ["c5.2xlarge costs $0.34 per hour.", "C5 is cheaper than C4."], False),
        ("When did C5d come out?", ["C5 launched on 6 November 2017.", "C5d has local NVMe SSDs."], True),
        ("when did it launch?", ["C5 launched on 6 November 2017."], False),  # names nothing: any sentence
    ],
)
def test_the_fact_asked_for_must_be_in_a_sentence_about_what_the_question_names(question, sentences, missing):
    assert unmet_by(question, [(text, frozenset(tokenize(text))) for text in sentences]) is missing


@pytest.mark.parametrize(
    ("question", "answer", "missing"),
    [
        ("how many vCPUs does c5.18xlarge have?", "c5.18xlarge has 72 vCPUs.", False),
        ("how many vCPUs does c5.18xlarge have?", "c5.18xlarge is the largest C5 and M5 size.", True),
        ("Zalando 省了百分之多少 CPU?", "Zalando 把时钟源改成 tsc,C5、M5 除外。", True),
        ("which ena version, 1.2?", "Kernel 1.2 is not enough.", True),  # what the asker gave
        ("which ena version, 1.2?", "Use ENA driver 2.0.3 or later.", False),
    ],
)
def test_a_value_the_question_gives_or_a_digit_in_a_name_tells_nothing(question, answer, missing):
    assert unmet(question, answer) is missing


def test_a_value_given_in_the_story_is_told_though_only_the_asked_part_asks():
    question = "The February 2018 docs say Time Sync is coming soon for C5. On what date did it arrive?"
    answer = "In February 2018 the docs said Time Sync support was coming soon for C5."
    assert not unmet(asking(question), answer)  # the asked part alone does not give February 2018
    assert unmet(asking(question), answer, question)
    assert not unmet(asking(question), "It arrived in June 2018.", question)


def test_only_what_a_question_asks_asks_for_a_kind_of_fact():
    question = "Got paged when /data went read-only on a c5. Which timeout value fixes it?"
    answer = "Set `nvme_core.io_timeout` to 4294967295."
    assert unmet(question, answer)  # "when" in the story reads as asking for a date
    assert not unmet(asking(question), answer)


def test_calibration_is_kept_per_embedder_set_and_a_broken_file_falls_back(tmp_path):
    path = tmp_path / "calibration.json"
    fitted = replace(Calibration(), threshold=0.42)
    fitted.save(["use", "minilm"], path)
    assert Calibration.load(["minilm", "use"], path).threshold == 0.42  # order does not matter
    assert Calibration.load(["use"], path) == Calibration()
    path.write_text("{not json", encoding="utf-8")
    assert Calibration.load(["use", "minilm"], path) == Calibration()
    path.write_text('{"minilm+use": {"ranker": 1}}', encoding="utf-8")
    with pytest.raises(CalibrationError, match="malformed"):
        Calibration.load(["use", "minilm"], path)


def test_a_calibration_naming_other_features_is_refused_with_a_clear_message(tmp_path):
    path = tmp_path / "calibration.json"
    entry = Calibration().to_dict()
    entry["ranker"]["coef"]["renamed_feature"] = entry["ranker"]["coef"].pop("dense")
    path.write_text(json.dumps({"minilm+use": entry}), encoding="utf-8")
    with pytest.raises(CalibrationError, match=r"missing \['dense'\], unknown \['renamed_feature'\]"):
        Calibration.load(["use", "minilm"], path)


def test_another_corpus_gets_the_portable_confidence_model_and_the_fitted_corpus_its_own(kb, tmp_path):
    """A confidence model fitted on absolute cosines serves only the corpus it was fitted on, by content."""
    shipped = kb.answerer.calibration
    here = sorted(kb.store.digests().values())
    assert shipped.provenance["documents"] == here  # kb/calibration.json was fitted on this corpus
    assert shipped.portable is not None and shipped.confidence.coef["relevance"] != 0
    ranker, portable, threshold = shipped.portable
    assert {n for n, w in portable.coef.items() if w} <= set(PORTABLE_FEATURES)
    assert shipped.for_corpus([*here, "a-new-document"]) is shipped  # a corpus that grew a little
    elsewhere = shipped.for_corpus(here[:2] + [f"other-{i}" for i in range(len(here))])
    assert (elsewhere.ranker, elsewhere.confidence, elsewhere.threshold, elsewhere.adapter) == (
        ranker,
        portable,
        threshold,
        None,
    )
    assert (shipped.serving, elsewhere.serving, kb.stats()["confidence"]) == ("corpus", "portable", "corpus")
    assert Calibration().for_corpus(["other"]) == Calibration()  # nothing recorded: used as it is
    moved = replace(shipped, provenance={**shipped.provenance, "documents": ["other"]})
    assert Answerer(kb.answerer.retriever, moved).calibration.confidence == portable
    path = tmp_path / "calibration.json"
    shipped.save(["use", "minilm"], path)
    assert Calibration.load(["use", "minilm"], path).portable == shipped.portable  # stored and read back


def test_an_adapter_is_stored_read_back_and_left_out_on_another_corpus(tmp_path):
    rng = np.random.default_rng(0)
    adapter = Adapter(*(rng.normal(size=(8, 2)).astype(np.float32) for _ in range(2)))
    fitted = replace(
        Calibration(),
        adapter=adapter,
        provenance={"documents": ["a", "b"]},
        portable=(Calibration().ranker, Calibration().confidence, 0.5),
    )
    path = tmp_path / "calibration.json"
    fitted.save(["use"], path)
    back = Calibration.load(["use"], path).adapter
    assert back is not None and back.up.shape == (8, 2)
    np.testing.assert_allclose(
        np.hstack([back.up, back.down]), np.hstack([adapter.up, adapter.down]), rtol=1e-4
    )
    assert fitted.for_corpus(["a", "b"]).adapter is adapter  # the corpus it was fitted on
    assert (
        fitted.for_corpus(["x", "y"]).adapter is None
    )  # it would pull questions toward another corpus's answers
    assert Calibration.load(["minilm"], path).adapter is None  # none fitted: the model's vectors as they are
    entries = json.loads(path.read_text(encoding="utf-8"))
    entries["use"]["adapter"]["up"][0] = "0.1 0.2 not-a-number"
    path.write_text(json.dumps(entries), encoding="utf-8")
    with pytest.raises(CalibrationError, match="malformed adapter"):
        Calibration.load(["use"], path)


def test_the_relevance_cosines_are_read_through_the_calibrations_adapter(kb):
    question = "Which regions had C5 at launch?"
    relevance = kb.answerer.retriever.relevance
    if relevance is None:
        pytest.skip("no relevance model in this model set")
    vector = relevance.embed_queries([question])[0]
    rng = np.random.default_rng(0)
    adapter = Adapter(*(0.1 * rng.normal(size=(len(vector), 2)).astype(np.float32) for _ in range(2)))
    draft = kb.answerer.draft(question, calibration=replace(kb.answerer.calibration, adapter=adapter))
    assert draft.adapter is adapter
    expected = candidate_vectors(kb, relevance.model_id, draft.candidates) @ adapter(vector)
    got = [c.features.relevance for c in draft.candidates]
    np.testing.assert_allclose(got, expected, atol=1e-4)
    plain = kb.answerer.draft(question, calibration=replace(kb.answerer.calibration, adapter=None))
    # the adapted cosines also reorder the passages read (kb.fusion.lift_by_relevance): each draft's own
    adapted = candidate_vectors(kb, relevance.model_id, plain.candidates) @ adapter(vector)
    assert not np.allclose([c.features.relevance for c in plain.candidates], adapted, atol=1e-3)
    # a document changed since the calibration was fitted keeps the model's own cosines: the adapter
    # learned this material's answers and would pull its new passages away from their questions
    changed = kb.store.chunk(draft.candidates[0].row).doc_id
    digests = kb.store.digests()
    fitted = [d for doc_id, d in digests.items() if doc_id != changed]
    moved = replace(kb.answerer.calibration, adapter=adapter, provenance={"documents": fitted})
    mixed = kb.answerer.draft(question, calibration=moved)
    own = candidate_vectors(kb, relevance.model_id, mixed.candidates) @ vector
    expected = candidate_vectors(kb, relevance.model_id, mixed.candidates) @ adapter(vector)
    in_changed = np.array([kb.store.chunk(c.row).doc_id == changed for c in mixed.candidates])
    assert in_changed.any() and not in_changed.all()
    got = np.array([c.features.relevance for c in mixed.candidates])
    np.testing.assert_allclose(got[in_changed], own[in_changed], atol=1e-4)
    np.testing.assert_allclose(got[~in_changed], expected[~in_changed], atol=1e-4)


def _signals(cosines, langs, background=None):
    rows = np.arange(len(cosines), dtype=np.int64)
    sentences = SentenceRows(rows, rows, rows.astype(np.int32), rows.astype(np.int32) + 1, {})
    return Signals(
        "en",
        rows,
        np.array(langs),
        np.array(["faq"] * len(rows)),
        None,
        {},
        sentences,
        {},
        np.array(cosines, np.float32),
        background,
    )


def test_standout_measures_the_best_cosine_against_its_language_or_the_stores_sample(kb):
    assert kb.answerer.draft("Which regions had C5 at launch?").standout > 2  # its answer stands out
    cosines = [0.9, 0.5, 0.6, 0.7, 0.8, 0.1]
    langs = ["en", "en", "en", "en", "en", "zh"]
    same = np.array(cosines[:5], np.float32)
    assert standout(_signals(cosines, langs), minimum=5) == pytest.approx(
        (0.9 - same.mean()) / same.std(), rel=1e-5
    )
    assert standout(_signals(cosines, langs), minimum=6) == 0.0  # too few English sentences to have a spread
    sample = (np.array([0.2, 0.4, 0.3, 0.95], np.float32), np.array(["en", "en", "en", "zh"]))
    expected = (0.9 - np.mean([0.2, 0.4, 0.3])) / np.std([0.2, 0.4, 0.3])
    assert standout(_signals(cosines, langs, sample), minimum=3) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("question", ["", "   ", "x" * 2001])
def test_empty_or_huge_question_is_a_clear_error(kb, question):
    with pytest.raises(InvalidQuestion):
        kb.ask(question)


def test_filters_restrict_sources_and_languages(kb):
    hits = kb.search("NVMe timeout", k=5, kinds=["faq"], langs=["zh"])
    assert hits and all(h.chunk.kind == "faq" and h.chunk.lang == "zh" for h in hits)


@pytest.mark.parametrize(
    ("question", "lang"),
    [
        ("why KVM over Xen", "en"),
        ("Which regions have C5?", "en"),
        ("哪些区域有 C5?", "zh"),
        ("C5 的 ENA 要怎么开", "zh"),
    ],
)
def test_the_answer_is_written_in_the_question_language(kb, question, lang):
    answer = kb.ask(question)
    assert not answer.abstained and answer.lang == lang
    assert detect_lang(answer.answer) == lang
    assert answer.citations[0].lang == lang
    for cited in answer.citations[1:]:
        if cited.lang != lang:  # what nothing in the question's language says, labelled with its source
            assert label(lang, cited.source, cited.lang) + cited.quote in answer.answer


def test_the_request_can_name_the_answer_language(kb):
    answer = kb.ask("why KVM over Xen", lang="zh")
    assert not answer.abstained and answer.lang == "zh" and detect_lang(answer.answer) == "zh"


def test_an_faq_sentence_in_the_other_language_is_replaced_by_its_twin(kb):
    draft = kb.answerer.draft("C5 于哪天发布?", lang="en")
    zh = next(c for c in draft.candidates if c.lang == "zh" and kb.store.chunk(c.row).origin.entry_key)
    said = kb.answerer.realiser.counterpart(zh, draft.candidates, "en", draft.view)
    assert said and all(c.lang == "en" for c in said)
    original, replaced = kb.store.chunk(zh.row), kb.store.chunk(said[0].row)
    assert replaced.origin.entry_key == original.origin.entry_key and replaced.doc_id != original.doc_id


@pytest.mark.parametrize(
    "question",
    [
        "哪些区域有 C5?",
        "C5 比 C4 便宜一半吗?",
        "does nested virtualization just work on c5?",
        "DescribeInstances 的 hypervisor 字段在 C5 上是不是变成 kvm 了?",
        "can I hardcode nvme1n1 as the first attached volume?",
    ],
)
def test_a_claim_a_later_reply_corrects_is_never_quoted(kb, question):
    always = replace(kb.answerer.calibration, threshold=0.0)
    answer = kb.answerer.finish(kb.answerer.draft(question), always)
    disputed = [c for _, c in iter_chunks(kb.store) if c.origin.disputed_by or c.origin.asks]
    assert disputed
    for chunk in disputed:
        assert chunk.text not in answer.answer
    cited = {c.chunk_id for c in answer.citations}
    assert not cited & {c.chunk_id for c in disputed}


def test_a_retrieved_corrected_claim_brings_its_corrections_at_its_rank(kb):
    row, claim = next((row, c) for row, c in iter_chunks(kb.store) if c.origin.disputed_by)
    hit = Hit(claim, 1.0, rank=3, row=row)
    out = with_corrections(kb.store, [hit])
    assert out[0] == hit and len(out) == 1 + len(set(claim.origin.disputed_by))
    assert all(h.rank == 3 and h.chunk.origin.comment_id in claim.origin.disputed_by for h in out[1:])
    assert with_corrections(kb.store, out) == out  # already retrieved: not twice
    assert with_corrections(kb.store, [hit], langs=["xx"]) == [hit]  # a search limited to other languages


def test_a_question_echoing_a_corrected_claim_is_answered_with_the_correction(kb):
    draft = kb.answerer.draft("c5 is half the price of c4 per hour, right?", kinds=["thread"])
    claims = {h.chunk.chunk_id: h.chunk.text for h in draft.hits if h.chunk.origin.disputed_by}
    always = replace(kb.answerer.calibration, threshold=0.0)
    answer = kb.answerer.finish(draft, always)
    assert any(c.label == "correction" and c.corrects["chunk_id"] in claims for c in answer.citations)
    assert not any(text in answer.answer for text in claims.values())


def test_a_correction_cites_what_it_corrects_without_quoting_it(kb):
    corrections = [c for _, c in iter_chunks(kb.store) if c.origin.corrects]
    assert corrections
    draft = kb.answerer.draft(
        "Would setting --sriov-net-support simple satisfy the c5 check?", kinds=["thread"]
    )
    always = replace(kb.answerer.calibration, threshold=0.0)
    answer = kb.answerer.finish(draft, always)
    labelled = [c for c in answer.citations if c.label == "correction"]
    assert labelled and labelled[0].corrects and labelled[0].corrects["url"]
    corrected = next(c for _, c in iter_chunks(kb.store) if c.chunk_id == labelled[0].corrects["chunk_id"])
    assert corrected.origin.disputed_by and corrected.text not in answer.answer


def test_words_count_as_evidence_only_in_a_language_the_material_is_written_in(kb, corpus_dir, tmp_path):
    """Over Chinese-only material an English question uses words the material never does: that says nothing
    about whether it is covered, so neither the unknown share nor a missing name is read."""
    from kb.knowledge import KnowledgeBase
    from service.indexing import ingest

    question = "How many GPUs does a p3.16xlarge have?"
    assert kb.answerer.draft(question).missing_name == 1.0  # a bilingual corpus: the name is unknown
    corpus = tmp_path / "corpus"
    for source in ("faq/c5-migration.zh.md", "article/aws-kvm-infoq.zh.md"):
        (corpus / source).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(corpus_dir / source, corpus / source)
    settings = Settings(index_dir=tmp_path / "kbq" / "index", corpus_dir=corpus)
    _, problems = ingest(settings)
    assert not problems
    draft = KnowledgeBase.open(settings).answerer.draft(question)
    assert (draft.missing_name, draft.unknown) == (0.0, 0.0)
    assert draft.candidates and all(c.lang == "zh" for c in draft.candidates)
