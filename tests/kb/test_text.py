from __future__ import annotations

import pytest

from kb.text import (
    code_terms,
    detect_lang,
    is_figure,
    language_neutral,
    sentence_spans,
    simplified,
    tokenize,
)


def sentences(text: str) -> list[str]:
    return [text[a:b] for a, b in sentence_spans(text)]


@pytest.mark.parametrize(
    "text",
    [
        "C5 runs a custom 3.0 GHz Intel Xeon Platinum 8000-series processor.",
        "The largest size is c5.18xlarge with 72 vCPUs.",
        "After the move the root disk is /dev/nvme0n1 instead of /dev/xvda.",
        "Run `sudo dracut -f -v. --force` first.",
        "At launch it was in US East (N. Virginia) and EU (Ireland), e.g. for HPC.",
        "See https://aws.amazon.com/ec2/faqs/?a=1. for details.",
    ],
)
def test_no_split_inside_numbers_names_paths_code_or_urls(text):
    assert sentences(text) == [text]


def test_splits_chinese_and_english_punctuation_and_lines():
    text = "C5 在三个区域可用。AMI 必须包含 ENA 驱动！还要 NVMe 吗？当然要；Also ENA. And NVMe!\n- item one\n"
    assert sentences(text) == [
        "C5 在三个区域可用。",
        "AMI 必须包含 ENA 驱动！",
        "还要 NVMe 吗？",
        "当然要；",
        "Also ENA.",
        "And NVMe!",
        "item one",
    ]


def test_a_quoted_question_inside_a_sentence_does_not_end_it():
    text = 'Tools that used it as an "am I on EC2?" test broke. Is it? It is. 还要吗?当然。'
    assert sentences(text) == [
        'Tools that used it as an "am I on EC2?" test broke.',
        "Is it?",
        "It is.",
        "还要吗?",
        "当然。",
    ]


def test_a_sentence_starts_after_the_reply_word_that_answered_another_question():
    # quoted whole, "Yes, C5 provides…" would affirm "c5.18xlarge is 64 vCPUs, right?"
    text = (
        "Yes, C5 provides 2 GiB of memory per vCPU. Partly. No changes are needed. "
        "有,AWS Support 提供了脚本。不是。随 C5 推出的就是它。有些实例可以。Nope; it is free."
    )
    assert sentences(text) == [
        "C5 provides 2 GiB of memory per vCPU.",
        "No changes are needed.",
        "AWS Support 提供了脚本。",
        "随 C5 推出的就是它。",
        "有些实例可以。",
        "it is free.",
    ]


@pytest.mark.parametrize(
    ("text", "neutral"),
    [
        ("```\naws ec2 stop-instances --instance-ids i-xxxxxxxx\n```", True),
        ("```\n# 先停止实例\naws ec2 stop-instances\n```", False),  # a Chinese comment is Chinese
        ("Run `aws ec2 stop-instances` first.", False),  # prose around code is in a language
    ],
)
def test_a_code_block_without_chinese_is_in_no_language(text, neutral):
    assert language_neutral(text) is neutral


def test_fenced_code_block_is_one_unit():
    text = "Check it. Then:\n```\nmodinfo ena\nethtool -i eth0\n```\nDone."
    assert sentences(text) == ["Check it.", "Then:\n```\nmodinfo ena\nethtool -i eth0\n```", "Done."]
    text = "Check it.\n\n```\nmodinfo ena\n```\nDone."
    assert sentences(text) == ["Check it.", "```\nmodinfo ena\n```", "Done."]


@pytest.mark.parametrize("colon", [":", "\uff1a"])
def test_a_code_block_is_one_unit_with_its_lead_in(colon):
    text = f"Stop the instance, then set the attribute{colon}\n\n```\naws ec2 modify-instance-attribute\n```"
    assert sentences(text) == [text]


def test_a_short_list_is_one_unit_with_its_lead_in():
    text = "Intro sentence. Supported systems:\n\n- Ubuntu 14.04 or later\n- RHEL 7.4 or later\n\nAfter."
    assert sentences(text) == [
        "Intro sentence.",
        "Supported systems:\n\n- Ubuntu 14.04 or later\n- RHEL 7.4 or later",
        "After.",
    ]
    steps = "步骤如下:\n1. 确认 nvme 模块。\n2. 修改 fstab。"
    assert sentences(steps) == [steps]


def test_a_list_with_a_long_item_stays_one_unit_per_sentence():
    long_item = "Check the DMI data, which " + "is slow but reliable " * 8 + "on every instance."
    text = f"Ways:\n- {long_item}\n- Read the tag."
    assert sentences(text) == ["Ways:", long_item, "Read the tag."]
    many = "Tools:\n" + "\n".join(f"- tool number {i} broke on C5" for i in range(30))
    assert len(sentences(many)) == 31


def test_a_small_table_is_one_unit_with_its_lead_in_and_a_big_one_is_split_by_row():
    table = "| Size | Bandwidth |\n| --- | --- |\n| c4.large | 500 Mbps |\n| c4.xlarge | 750 Mbps |"
    text = f"Limits differ. Each C4 size has its own bandwidth:\n\n{table}\n\nAfter."
    assert sentences(text) == [
        "Limits differ.",
        f"Each C4 size has its own bandwidth:\n\n{table}",
        "After.",
    ]
    big = "\n".join(f"| c4.size{i} | {i * 100} Mbps and a long remark on this row |" for i in range(40))
    assert len(sentences(big)) == 40


def test_spans_are_offsets_into_the_text():
    text = "  First one.  Second one!  "
    for a, b in sentence_spans(text):
        assert text[a:b].strip() == text[a:b]


def test_tokenize_stems_english_keeps_compounds_and_uses_chinese_bigrams():
    tokens = tokenize("Which regions have c5.18xlarge? 区域可用")
    assert {"region", "c5.18xlarg", "c5", "18xlarg"} <= set(tokens)
    assert {"区域", "域可", "可用"} <= set(tokens)
    assert "which" not in tokens


def test_detect_lang():
    assert detect_lang("换到 C5 后 fstab 要怎么改?") == "zh"
    assert detect_lang("Which regions have C5?") == "en"


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("nitro_check_script.sh 比 c5_m5_checks_script 多查了啥", "zh"),  # names are in no language
        ("c4.xlarge 改成 c5.xlarge 之后起不来，status check 一直 failed。", "zh"),
        ("改了 `GRUB_CMDLINE_LINUX=nvme_core.io_timeout=4294967295` 还是不行", "zh"),
        ("Run `sudo dracut -f` on c5.xlarge and reboot.", "en"),
        ("what does 弹性 mean in the console?", "en"),
        ("配置文件.txt 在哪", "zh"),  # a Chinese character keeps its word prose
        ("```\nmodinfo ena\n```", "en"),  # nothing but code counts whole
    ],
)
def test_code_and_names_do_not_decide_the_language(text, lang):
    assert detect_lang(text) == lang


@pytest.mark.parametrize(
    ("term", "figure"),
    [
        ("4294967295", True),  # a number, however long
        ("2016-11-15", True),
        ("c5.18xlarge", True),
        ("e5-2666", True),
        ("12345678", True),
        ("i-1234567890abcdef0", False),  # a resource ID: a placeholder in an example command
        ("ami-0abc1234", False),
        ("9cf5e2467afb", False),  # a hash
        ("nvme", False),
    ],
)
def test_an_identifier_is_not_a_figure(term, figure):
    assert is_figure(term) is figure


def test_code_terms_are_the_words_of_inline_or_fenced_code_in_either_language():
    english = code_terms("Check with `lsinitrd | grep nvme`, or on Ubuntu `lsinitramfs /boot/initrd.img`.")
    chinese = code_terms("换机型前先 `lsinitrd | grep nvme` 检查一下")
    assert chinese == {"lsinitrd", "grep", "nvme"} and chinese < english
    assert english - chinese >= set(tokenize("lsinitramfs"))
    assert "check" not in english and not code_terms("no code, only 4.15 and c5.18xlarge")
    # fenced code too, without the placeholder IDs two copies of one command differ in
    block = code_terms("Run:\n\n```\naws ec2 stop-instances --instance-ids i-1234567890abcdef0\n```")
    assert {"ec2", "stop"} <= block and not {t for t in block if "1234567890" in t}


def test_traditional_and_simplified_chinese_are_the_same_terms():
    assert tokenize("C5 剛推出的時候亞太區有得開嗎") == tokenize("C5 刚推出的时候亚太区有得开吗")
    assert simplified("請問 c5.xlarge 時脈") == "请问 c5.xlarge 时脉"
    assert simplified("nvme_core.io_timeout=255") == "nvme_core.io_timeout=255"  # no Chinese: as it is
