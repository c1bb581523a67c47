"""An answer as a Slack message: Block Kit blocks with linked citations, within Block Kit's limits."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, urlencode

from kb.types import Answer, Citation
from service.slackbot.text import escape

MAX_TEXT = 3000  # characters in one section's text
MAX_BLOCKS = 50
MAX_ANSWER_SECTIONS = 5
QUOTE_CHARS = 200  # escaping at most quintuples a text; these keep every text within MAX_TEXT
FALLBACK_CHARS = 500  # the notification text
FEEDBACK_UP, FEEDBACK_DOWN = "kbq_feedback_up", "kbq_feedback_down"
KIND_LABEL = {"article": "article", "faq": "FAQ", "thread": "thread comment"}
TRUST_LABEL = {"official": "official source", "community": "community report", "correction": "correction"}
LANG_TAG = {"en": "EN", "zh": "中文"}
_REF = re.compile(r"\[(\d+)\]")
_LINK = re.compile(r"(<[^<>]*>)")

Block = dict[str, Any]


def passage_url(citation: Citation, public_url: str) -> str:
    """Where a reader checks a citation: the comment's permalink for a thread, else the document view."""
    if citation.source == "thread" and citation.url:
        return citation.url
    doc = quote(citation.doc_id, safe="/")
    return f"{public_url.rstrip('/')}/docs/{doc}?{urlencode({'start': citation.start, 'end': citation.end})}"


def clip(text: str, limit: int) -> str:
    """``text`` on one line, cut to ``limit`` characters (before escaping, so no entity is cut)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def link(url: str, label: str) -> str:
    """A mrkdwn link; ``label`` must already be escaped."""
    return f"<{escape(url).replace('|', '%7C')}|{label}>"


def mrkdwn(text: str) -> dict[str, Any]:
    # verbatim: Slack must not turn words of the source text into channel links or mentions
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def linked_answer(answer: Answer, public_url: str) -> str:
    """The answer as escaped mrkdwn with every ``[n]`` a link to the passage it cites."""
    urls = {c.n: passage_url(c, public_url) for c in answer.citations}

    def ref(match: re.Match[str]) -> str:
        n = int(match.group(1))
        return link(urls[n], match.group(0)) if n in urls else match.group(0)

    return _REF.sub(ref, escape(answer.answer))


def split_mrkdwn(text: str, limit: int = MAX_TEXT) -> list[str]:
    """Pieces of at most ``limit`` characters, cut at spaces and never inside a ``<link>`` or ``&entity;``."""
    pieces, current = [], ""
    for part in _LINK.split(text):
        if _LINK.fullmatch(part):  # our own links to passages: short, and kept whole
            if len(current) + len(part) > limit:
                pieces.append(current)
                current = ""
            current += part
            continue
        while len(current) + len(part) > limit:
            cut = _cut_point(part, limit - len(current)) or (0 if current else limit)
            pieces.append(current + part[:cut])
            current, part = "", part[cut:].lstrip()
        current += part
    return [p for p in [*pieces, current] if p.strip()]


def _cut_point(text: str, room: int) -> int:
    """Where to end a piece of at most ``room`` characters: after a space if one is near, never in ``&amp;``."""
    space = text.rfind(" ", 0, room)
    cut = space + 1 if space >= room // 2 else room
    amp = text.rfind("&", max(0, cut - 4), cut)
    return amp if amp != -1 and text.find(";", amp) >= cut else cut


def trust_label(citation: Citation) -> str:
    """Official source, community report, or a community correction (linked to the comment it corrects)."""
    label = TRUST_LABEL.get(citation.label, escape(citation.label))
    corrected = citation.corrects or {}
    url, author = corrected.get("url"), corrected.get("author")
    if citation.label == "correction" and url:
        whose = f"{escape(clip(author, 60))}’s comment" if author else "an earlier comment"
        label += f" of {link(url, whose)}"
    return label


def citation_block(citation: Citation, public_url: str) -> Block:
    where = " › ".join(clip(x, 200) for x in (citation.title, citation.section) if x) or citation.doc_id
    kind = KIND_LABEL.get(citation.source, escape(citation.source))
    head = f"*[{citation.n}]* {link(passage_url(citation, public_url), escape(where))} · {kind}"
    head += f" · {trust_label(citation)}"
    head += f" · {escape(citation.date)}" if citation.date else ""
    return {
        "type": "context",
        "elements": [mrkdwn(head), mrkdwn(f"“{escape(clip(citation.quote, QUOTE_CHARS))}”")],
    }


def feedback_block(answer_id: str) -> Block:
    def button(action_id: str, label: str) -> dict[str, Any]:
        text = {"type": "plain_text", "text": label, "emoji": True}
        return {"type": "button", "action_id": action_id, "value": answer_id, "text": text}

    buttons = [button(FEEDBACK_UP, ":+1: Helpful"), button(FEEDBACK_DOWN, ":-1: Not helpful")]
    return {"type": "actions", "block_id": "kbq_feedback", "elements": buttons}


def answer_message(answer: Answer, public_url: str) -> dict[str, Any]:
    """``text`` (the notification fallback) and ``blocks`` for chat.postMessage or a response_url."""
    question = {"type": "context", "elements": [mrkdwn(f"*Question:* {escape(clip(answer.question, 500))}")]}
    if answer.abstained:
        body = [f":grey_question: {escape(answer.answer)}"]
        heading = "*Nearest passages* — not an answer; check them yourself:"
    else:
        body = split_mrkdwn(linked_answer(answer, public_url))[:MAX_ANSWER_SECTIONS]
        heading = "*Sources*"
    blocks: list[Block] = [question] + [{"type": "section", "text": mrkdwn(t)} for t in body]
    tag = LANG_TAG.get(answer.lang, escape(answer.lang.upper()))
    footer = {"type": "context", "elements": [mrkdwn(f"`{tag}` · confidence {answer.confidence:.2f} · kbq")]}
    if answer.citations:
        room = MAX_BLOCKS - len(blocks) - 4  # heading, actions, footer, and a possible "more" line
        blocks.append({"type": "section", "text": mrkdwn(heading)})
        blocks += [citation_block(c, public_url) for c in answer.citations[:room]]
        if len(answer.citations) > room:
            more = f"…and {len(answer.citations) - room} more passages"
            blocks.append({"type": "context", "elements": [mrkdwn(more)]})
    blocks += [feedback_block(answer.id), footer]
    return {"text": escape(clip(answer.answer, FALLBACK_CHARS)), "blocks": blocks}


def notice(text: str) -> dict[str, Any]:
    """A short message of our own (usage, errors); ``text`` is mrkdwn we wrote, not user content."""
    return {"text": text, "blocks": [{"type": "section", "text": mrkdwn(text)}]}
