"""Slack text in and out: turn a message's mrkdwn into a plain question, escape what we post, and the
follow-up rule that completes a short question in a thread with the thread's earlier one."""

from __future__ import annotations

import re
from collections.abc import Iterable

_TOKEN = re.compile(r"<([@#!][^<>]*|[a-z][a-z0-9+.-]*:[^<>]*)>", re.I)  # mentions, channels, links
_CJK = re.compile(r"[\u2e80-\u9fff\uf900-\ufaff]")
# "what about Windows?", "and on Graviton?", "那 Windows 呢?": phrasings that lean on an earlier question
_CUE = re.compile(r"^(what|how) about\b|^(and|also|same|what if|then)\b|^(那|还有|那么)|呢\s*[?？]?$", re.I)
SHORT_WORDS = 3  # a question of at most this many words leans on an earlier one (a CJK word: 2 characters)


def locale_lang(locale: str | None) -> str | None:
    """The answer language (``zh``, ``en``) of a Slack locale such as ``zh-CN`` or ``en-GB``; None for others."""
    lang = (locale or "").split("-")[0].lower()
    return lang if lang in ("en", "zh") else None


def escape(text: str) -> str:
    """Escape the three characters Slack mrkdwn treats as control characters, and nothing else."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _plain_token(match: re.Match[str]) -> str:
    target, _, label = match.group(1).partition("|")
    if target[:1] in "@#":
        return target[0] + (label.lstrip("@#") or target[1:])
    if target[:1] == "!":  # <!channel>, <!here>, <!subteam^ID|@team>, <!date^…|fallback>
        return label or "@" + target[1:].split("^")[0]
    return label or target  # a link


def plain_text(text: str, bot_user_id: str | None = None) -> str:
    """A Slack message's text as the plain question its author typed, without the mention of the bot.

    Slack sends mentions, channels and links as ``<…>`` tokens and escapes ``& < >``; the knowledge base
    gets readable text (``<!channel>`` becomes ``@channel``, which is harmless once it is plain text).
    """
    if bot_user_id:
        text = re.sub(rf"<@{re.escape(bot_user_id)}(\|[^>]*)?>", " ", text)
    text = _TOKEN.sub(_plain_token, text)
    text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return " ".join(text.split())


def is_follow_up(question: str) -> bool:
    """Short, or phrased as a continuation: such a question is read together with the thread's earlier one."""
    q = question.strip()
    if _CUE.search(q):
        return True
    words = len(re.findall(r"\w+", _CJK.sub(" ", q))) + len(_CJK.findall(q)) / 2
    return words <= SHORT_WORDS


def with_context(question: str, earlier: Iterable[str]) -> str:
    """``question``, preceded by the most recent earlier full question when ``question`` is a follow-up.

    ``earlier`` are the thread's earlier questions, oldest first. Earlier follow-ups are skipped, so a
    chain of "what about X?" questions keeps the thread's last full question as its subject.
    """
    if not is_follow_up(question):
        return question
    full = [q for q in earlier if q and not is_follow_up(q)]
    return f"{full[-1]} {question}" if full else question
