"""Language-aware text helpers: language detection, sentence spans and lexical tokens.

Sentence spans are offsets into the text they were computed on, so quotes built from
them are always exact substrings.
"""

from __future__ import annotations

import re
from functools import lru_cache

from kb.tuning import INDEX

HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # Chinese characters, as a regex class body
_CJK = re.compile(f"[{HAN}]")
_LATIN = re.compile(r"[A-Za-z]")
# A Chinese sentence ends at 。！？； (full or half width) plus any closing quote or bracket.
_ZH_END = re.compile(r"[。！？；!?;][”’」』）)\]]*")
# An English sentence ends at . ! ? followed by whitespace; "3.0 GHz" and "c5.18xlarge" never match.
_EN_END = re.compile(r"[.!?][\"'”’)\]]*(?=\s)")
# What follows a question or exclamation mark that does not end the sentence, because it ends a quotation
# inside it: a closing quote, then a lowercase word.
_CONTINUES = re.compile(r"[?!]*[\"'”’]+[ \t]*[a-z]")
_ABBREVIATIONS = {"e.g", "i.e", "vs", "etc", "approx", "no", "mr", "dr", "fig", "cf", "u.s", "inc", "ltd"}
_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
FENCE_MARKS = ("```", "~~~")  # what opens a fenced code block
LEAD_IN_ENDS = (":", "\uff1a")  # how a sentence that introduces a list, a table or a code block ends
QUESTION_ENDS = ("?", "\uff1f")  # how a question ends
_INLINE_CODE = re.compile(r"`[^`\n]+`")
_URL = re.compile(r"https?://\S+")
_MARKER = re.compile(r"(?:#{1,6}|[-*+·•]|\d{1,3}[.)]|>)[ \t]+")
# A reply word that opens a sentence answers the question it replied to (an FAQ heading, a parent comment);
# quoted in an answer to another question it would answer that one ("c5.18xlarge is 64 vCPUs, right?" ->
# "Yes, C5 provides 2 GiB of memory per vCPU"), so a sentence starts after it, and one that is only that is none.
# 5-fold on the 2,930 tune questions with the adapter fixed (beside a rule since left out, kb.answer.Answerer._next):
# support + min(abstention P, R) 1.760 -> 1.770
# (support 0.878 -> 0.879, abstention 0.895 / 0.882 -> 0.901 / 0.891)
_REPLY = re.compile(
    r"(?:(?:yes|no|yep|nope|yeah|nah|partly)(?=[,.;!]|\s*$)|(?:是的|不是|部分是|没有|不能|不会|有|会|能|对)(?=[,，。；！]|\s*$))"
    r"[,，.。;；!！]?\s*",
    re.IGNORECASE,
)
_LIST_ITEM = re.compile(r"[ \t]*(?:[-*+·•]|\d{1,3}[.)])[ \t]+")
_TABLE_ROW = re.compile(r"[ \t]*\|")
# A list of short items, or a small table, is one unit with the line that introduces it: "Reported
# breakages include:" and its items answer "which tools broke?" together, and a table row alone
# ("| c4.large | 500 Mbps | 62.5 MB/s |") means nothing without its header. Limits: INDEX.text.
# A word of code rather than prose: a run without spaces or Chinese characters that holds a digit, an
# underscore, a slash, a bracket, an equals sign or a dot between two letters or digits (c5.xlarge,
# /dev/nvme1n1, io_timeout=255).
_WORD_RUN = re.compile(rf"[^\s{HAN}]+")
_CODE_CHAR = re.compile(r"[\d_/\\=\[\]<>]|[A-Za-z0-9]\.[A-Za-z0-9]")
_LETTER = re.compile(f"[A-Za-z{HAN}]")
_TOKEN = re.compile(r"[a-z0-9]+(?:[._/:-][a-z0-9]+)*")
_CJK_RUN = re.compile(f"[{HAN}]+")

STOPWORDS = frozenset(
    "a an and are as at be by can do does for from has have how i in is it its of on or "
    "should so that the this to was what when where which who why will with you your "
    "的 了 是 在 和 有 吗 呢 吧 么 什 怎".split()
)


def cjk_ratio(text: str) -> float:
    cjk = len(_CJK.findall(text))
    latin = len(_LATIN.findall(text))
    return cjk / (cjk + latin) if cjk + latin else 0.0


def detect_lang(text: str) -> str:
    """'zh' when Chinese characters make up a real share of the letters of its prose, else 'en'. Code,
    paths, URLs and names such as c5.xlarge or nitro_check_script.sh are in no language and do not count,
    so "nitro_check_script.sh 比 c5_m5_checks_script 多查了啥" is Chinese; text that is nothing but code
    counts whole."""
    prose = _WORD_RUN.sub(_drop_code, _URL.sub(" ", _INLINE_CODE.sub(" ", _FENCE.sub(" ", text))))
    return "zh" if cjk_ratio(prose if _LETTER.search(prose) else text) >= INDEX.text.zh_share else "en"


def _drop_code(word: re.Match[str]) -> str:
    return " " if _CODE_CHAR.search(word.group()) else word.group()


def language_neutral(text: str) -> bool:
    """A fenced code block without Chinese in it (a command, a config file): it reads the same to an English
    and to a Chinese reader, so it is in the answer's language whichever document it comes from."""
    return _FENCE.fullmatch(text.strip()) is not None and not _CJK.search(text)


# Eight or more hexadecimal characters, letters among them: a resource ID, a hash or a UUID part (placeholder
# IDs differ between two copies of one command), not a quantity. Pure digits stay a number ("4294967295").
_IDENTIFIER = re.compile(r"(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{8,}", re.IGNORECASE)


@lru_cache(maxsize=16384)  # as ``simplified``: the corpus's sentences recur from question to question
def code_terms(text: str) -> frozenset[str]:
    """The terms (``tokenize``) of ``text``'s code, inline or fenced: a command, an option, a path, written the
    same in either language. Identifiers are left out: two copies of one command differ in placeholder IDs."""
    code = (m.group(0) for pattern in (_FENCE, _INLINE_CODE) for m in pattern.finditer(text))
    return frozenset(
        t for span in code for t in tokenize(span) if t.isascii() and _IDENTIFIER.search(t) is None
    )


def is_figure(term: str) -> bool:
    """A term that states a figure: a number, a size, a version, an instance type ("4.15", "c5.18xlarge",
    "2016-11-15"), but not an identifier ("i-1234567890abcdef0")."""
    return any(ch.isdigit() for ch in term) and _IDENTIFIER.search(term) is None


def _protected(text: str, start: int, end: int) -> list[tuple[int, int]]:
    spans = [m.span() for m in _FENCE.finditer(text, start, end)]
    spans += [m.span() for m in _INLINE_CODE.finditer(text, start, end)]
    spans += [m.span() for m in _URL.finditer(text, start, end)]
    return spans


def _inside(pos: int, spans: list[tuple[int, int]]) -> bool:
    return any(a <= pos < b for a, b in spans)


def _is_abbreviation(text: str, dot: int) -> bool:
    """'e.g.', 'vs.' and initials such as the 'N.' of 'N. Virginia' do not end a sentence."""
    word = re.search(r"(?<![A-Za-z])([A-Za-z.]+)$", text[max(0, dot - 8) : dot])
    if not word:
        return False
    token = word.group(1)
    return token.lower().strip(".") in _ABBREVIATIONS or (len(token) == 1 and token.isupper())


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    marker = _MARKER.match(text, start, end)
    if marker and marker.end() < end:
        start = marker.end()
    reply = _REPLY.match(text, start, end)
    if reply:
        start = reply.end()
    return start, end


def sentence_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Split ``text[start:end]`` into sentence spans (absolute offsets, trimmed, non-empty).

    Lines are separate units; a fenced code block is one unit; no split happens inside
    inline code, URLs, decimals such as "3.0 GHz" or names such as "c5.18xlarge".
    """
    end = len(text) if end is None else end
    protected = _protected(text, start, end)
    cuts: set[int] = set()
    fences = [s for s in protected if text.startswith(FENCE_MARKS, s[0])]
    for a, b in fences:
        cuts.update((a, b))
    for i in range(start, end):
        if text[i] == "\n" and not _inside(i, fences):
            cuts.add(i + 1)
    for pattern in (_ZH_END, _EN_END):
        for m in pattern.finditer(text, start, end):
            if _inside(m.start(), protected):
                continue
            if text[m.start()] == "." and _is_abbreviation(text, m.start()):
                continue
            if text[m.start()] in "?!" and _CONTINUES.match(text, m.start() + 1, end):
                continue  # a quoted question inside a sentence: tools used it as an "am I on EC2?" test
            cuts.add(m.end())
    bounds = sorted({start, end, *(c for c in cuts if start < c < end)})
    spans = []
    for a, b in zip(bounds, bounds[1:], strict=False):
        a, b = _trim(text, a, b)
        if b > a and re.search(r"\w", text[a:b]):
            spans.append((a, b))
    return _join_lead_ins(text, _join_blocks(text, spans))


def _block_line(text: str, span: tuple[int, int]) -> tuple[str, int, int] | None:
    """(kind, start, end) of the line a span sits on when that line is a short list item or a
    table row, else None."""
    line = text.rfind("\n", 0, span[0]) + 1
    line_end = text.find("\n", span[1])
    line_end = len(text) if line_end < 0 else line_end
    if _TABLE_ROW.match(text, line):
        return "table", line, line_end
    if _LIST_ITEM.match(text, line) and line_end - line <= INDEX.text.list_item_chars:
        return "list", line, line_end
    return None


def _join_blocks(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Merge each run of two or more short list items, or of table rows, and the line ending in a
    colon just before it, into one span; a list with a long item, or a list or table too long in
    all, stays one span per sentence."""
    out: list[tuple[int, int]] = []
    i = 0
    while i < len(spans):
        j = i
        lines = set()
        first = _block_line(text, spans[i])
        kind = first[0] if first else None
        while j < len(spans) and (line := _block_line(text, spans[j])) and line[0] == kind:
            lines.add(line[1:])
            j += 1
        limit = INDEX.text.table_unit_chars if kind == "table" else INDEX.text.list_unit_chars
        if len(lines) < 2 or spans[j - 1][1] - spans[i][0] > limit:
            out.extend(spans[i : max(j, i + 1)])
            i = max(j, i + 1)
            continue
        start = spans[i][0]
        if out and _leads_in(text, out[-1], min(lines)[0]):
            start = out.pop()[0]
        out.append((start, spans[j - 1][1]))
        i = j
    return out


def _join_lead_ins(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Merge a fenced code block with the sentence ending in a colon just before it ("Stop the instance, then
    set the attribute with `modify-instance-attribute`:"), as a list or a table keeps its lead-in: the lead-in
    alone answers nothing, and the block alone loses what it is for."""
    out: list[tuple[int, int]] = []
    for span in spans:
        if out and text.startswith(FENCE_MARKS, span[0]) and _leads_in(text, out[-1], span[0]):
            span = (out.pop()[0], span[1])
        out.append(span)
    return out


def _leads_in(text: str, before: tuple[int, int], block: int) -> bool:
    """The span ``before`` ends in a colon with nothing but white space between it and the block at ``block``."""
    return text[before[0] : before[1]].endswith(LEAD_IN_ENDS) and not text[before[1] : block].strip()


@lru_cache(maxsize=1)
def _stemmer():  # type: ignore[no-untyped-def]
    import Stemmer

    return Stemmer.Stemmer("english")


def simplified(text: str) -> str:
    """``text`` with traditional Chinese characters in their simplified form (OpenCC's t2s), so that a
    question written in Taiwan or Hong Kong ("C5 剛推出的時候") matches material written in the mainland ("C5
    刚推出的时候"), and the other way round. Other text is returned as it is."""
    return _converted(text) if _CJK.search(text) else text


@lru_cache(maxsize=16384)  # the corpus's sentences recur from question to question: each is converted once
def _converted(text: str) -> str:
    return _t2s().convert(text)  # type: ignore[no-any-return]


@lru_cache(maxsize=1)
def _t2s():  # type: ignore[no-untyped-def]
    import opencc

    return opencc.OpenCC("t2s")


def tokenize(text: str, cjk: str = "bigram") -> list[str]:
    """Lexical tokens: stemmed English words (and the parts of compounds such as
    ``c5.18xlarge``) plus Chinese as character bigrams (``cjk="bigram"``) or jieba words, in simplified
    characters whichever a text is written in (``simplified``)."""
    text = simplified(text.lower())
    words: list[str] = []
    for m in _TOKEN.finditer(text):
        tok = m.group(0)
        parts = re.split(r"[._/:-]", tok)
        words.append(tok)
        if len(parts) > 1:
            words.extend(p for p in parts if p)
    tokens = [w for w in _stemmer().stemWords(words) if w not in STOPWORDS]
    for run in _CJK_RUN.findall(text):
        tokens.extend(_cjk_tokens(run, cjk))
    return tokens


def _cjk_tokens(run: str, mode: str) -> list[str]:
    if mode == "jieba":
        return [w for w in _jieba().lcut_for_search(run) if w not in STOPWORDS]
    if len(run) == 1:
        return [run] if run not in STOPWORDS else []
    return [run[i : i + 2] for i in range(len(run) - 1)]


@lru_cache(maxsize=1)
def _jieba():  # type: ignore[no-untyped-def]
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
    return jieba
