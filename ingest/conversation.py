"""A thread as a conversation: which comments correct an earlier claim, and which only ask.

Works on any Reddit export, from the reply tree and the wording alone; nothing here knows the topic.
A comment corrects a claim when it opens with (or states) a correction ("No, that's wrong", "Actually,
…", "I think you're mixing it up", "不对", "纠正一下", "楼上说的有误") and its target is

- the comment whose words it quotes with ``>``, or
- the latest earlier comment of the user it names (``u/name``, ``@name``), or else
- the comment or post it replies to, unless that one only asked a question (a "No," that answers a
  question corrects nothing).

A comment that corrects itself ("edit: I was wrong") is disputed too. A disputed comment is never quoted
as an answer (kb/answer.py); its correction is.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from kb.text import QUESTION_ENDS

# Opening words that contradict what was said ("No.", "It isn't.", "不是，"): a correction of a claim, but
# only an answer when they reply to a plain question.
_CONTRADICTS = re.compile(
    r"^\W*(no\b[,.!:\s—-]|nope\b|nah\b[,.!\s]|not (true|quite|really)\b|hmm,? (no|i don'?t think so)\b|"
    r"i don'?t think so\b|it (isn'?t|is not|doesn'?t|does not|wasn'?t|didn'?t|won'?t)\b|(it'?s|that'?s) not\b|"
    r"other way (a)?round\b|that'?s the \W*other\b|不是|没有|并不是|并没有|没变|并非|其实不|实际上不)",
    re.I,
)
# Words that say outright that something said was wrong, wherever they stand: a correction even when they
# reply to a question asked under the claim.
_CORRECTS = re.compile(
    r"^\W*(that'?s (wrong|incorrect|false|outdated|a myth|not (right|true|correct))|this is (wrong|incorrect|"
    r"not true)|wrong\b|incorrect\b|false\b|actually\b|correction\b|to correct\b|you'?re (mixing|confusing|"
    r"thinking of|wrong)|i think you'?re (mixing|confusing|thinking of|wrong))|"
    r"\b(is (wrong|incorrect|not true|a myth|outdated)|isn'?t (true|right|correct)|not correct|"
    r"(mixing|mixed) (it|this|that|them) up|confusing (it|this|that) with|that'?s not how|"
    r"misinformation|is misleading|the opposite|not \d[\d.,]*|nothing (public|official) (says|supports))\b|"
    r"不对|纠正|更正|有误|别误导|(你|楼上|这|那)(说的)?(不对|错了|记错|有误|说错)|"
    r"这(个)?说法(不对|有误|不准确)|是错的|不准确|搞混了|记错了|并不是这样|误导|恰恰相反",
    re.I,
)
# A retraction of one's own claim: "edit: I was wrong", "my bad", "我看错了".
_SELF = re.compile(
    r"\b(i was (wrong|mistaken)|i stand corrected|scratch that|my bad|i misread|i misremembered)\b|"
    r"更正[:：]|我(之前|上面|刚才)?(看|说|记|理解|搞)错了|是我(看|说|记|理解|搞)错了",
    re.I,
)
# A short first sentence that denies ("公开 API 没变。", "Not on C5."): a contradiction wherever the denial stands.
_DENIES = re.compile(r"没变|没有变|不是|没有|并非|\b(isn'?t|doesn'?t|wasn'?t|didn'?t|not|never)\b", re.I)
SHORT_DENIAL_CHARS = 24
_AGREES = re.compile(
    r"^\W*(\+1|same\b|agreed?\b|confirmed\b|yep\b|yes\b|exactly\b|同意|\+1|对的|确实|没错)", re.I
)
_MENTION = re.compile(r"(?:\bu/|@)([A-Za-z0-9_-]{3,})")
_QUOTE = re.compile(r"^[ \t]*>[ \t]?(.+)$", re.M)
_QUESTION_END = re.compile(f"[{''.join(QUESTION_ENDS)}]" + r"[\s\"'”’)）]*$")  # closing quotes may follow
# A question that presupposes a claim ("isn't it …?", "… right?", "不是…吗?"): correcting it corrects the claim.
_LEADING = re.compile(
    r"\b(isn'?t|aren'?t|doesn'?t|don'?t|wasn'?t|didn'?t|won'?t|shouldn'?t|right\s*[?？]|surely|so .+ is)\b|"
    r"不是.*吗|不也|难道|对吧|对吗|听说",
    re.I,
)


@dataclass(frozen=True)
class Turn:
    """One comment (or the post) as the conversation sees it."""

    id: str
    author: str
    body: str
    parent: str  # the id it replies to; "" for the post


@dataclass(frozen=True)
class Roles:
    corrects: dict[str, tuple[str, ...]]  # comment id -> ids of the earlier turns whose claim it corrects
    disputed_by: dict[str, tuple[str, ...]]  # turn id -> ids of the later comments that correct it
    asks: frozenset[str]  # turns that only ask a question


def asks(body: str) -> bool:
    """A turn whose own words end in a question, and that states little else."""
    own = _own_lines(body)
    if not own or not _QUESTION_END.search(own[-1]):
        return False
    sentences = [s for s in re.split(r"(?<=[.!?。！？])\s*", " ".join(own)) if s.strip()]
    questions = [s for s in sentences if _QUESTION_END.search(s)]
    return len(questions) * 2 >= len(sentences)


def correction_strength(body: str) -> int:
    """2: says outright that something said was wrong; 1: contradicts it ("No.", "It isn't."); 0: neither.
    Only the comment's own words count (not what it quotes), and an agreement ("+1", "Confirmed") is none."""
    own = _own_lines(body)
    if not own or _AGREES.match(own[0]):
        return 0
    text = " ".join(own)
    if _CORRECTS.search(text):
        return 2
    # the first two sentences, unless they are questions ("Isn't it …?" doubts, it does not deny)
    openings = [s for s in re.split(r"(?<=[.!?。！？])\s*", text) if s.strip()][:2]
    openings = [s for s in openings if not _QUESTION_END.search(s)]
    if any(_CONTRADICTS.match(s) for s in openings):
        return 1
    return 1 if openings and len(openings[0]) <= SHORT_DENIAL_CHARS and _DENIES.search(openings[0]) else 0


def is_correction(body: str) -> bool:
    return correction_strength(body) > 0


def roles(turns: Sequence[Turn]) -> Roles:
    """Who corrects whom, in thread order (``turns`` in the order they were written or shown)."""
    asking = frozenset(t.id for t in turns if asks(t.body))
    by_id = {t.id: t for t in turns}
    corrects: dict[str, list[str]] = {}
    for i, turn in enumerate(turns):
        earlier = turns[:i]
        targets: list[str] = []
        strength = correction_strength(turn.body)
        if _SELF.search(turn.body):
            targets += _own_earlier(turn, earlier, by_id)
        elif strength:
            targets += _targets(turn, earlier, by_id, asking, strength)
        if targets:
            corrects[turn.id] = list(dict.fromkeys(targets))
    disputed: dict[str, list[str]] = {}
    for corrector, targets in corrects.items():
        for target in targets:
            disputed.setdefault(target, []).append(corrector)
    return Roles(
        {k: tuple(t for t in v if t != k) for k, v in corrects.items() if any(t != k for t in v)},
        {k: tuple(v) for k, v in disputed.items()},
        asking,
    )


def _own_earlier(turn: Turn, earlier: Sequence[Turn], by_id: dict[str, Turn]) -> list[str]:
    """What "edit: I was wrong" retracts: the author's turn it replies to, or their latest earlier turn,
    or else the comment itself (its wrong claim stands above the edit)."""
    parent = by_id.get(turn.parent)
    if parent is not None and parent.author == turn.author:
        return [parent.id]
    theirs = [t.id for t in earlier if t.author == turn.author]
    return theirs[-1:] or [turn.id]


def _targets(
    turn: Turn, earlier: Sequence[Turn], by_id: dict[str, Turn], asking: frozenset[str], strength: int
) -> list[str]:
    quoted = [_norm(q) for q in _QUOTE.findall(turn.body) if len(_norm(q)) >= 8]
    if quoted:
        found = [t.id for t in earlier if any(q in _norm(t.body) for q in quoted)]
        if found:
            return found[-1:]
    for name in _MENTION.findall(turn.body):
        theirs = [t.id for t in earlier if t.author.lower() == name.lower() and t.id not in asking]
        if theirs:
            return theirs[-1:]
    parent = by_id.get(turn.parent)
    if parent is not None and (parent.id not in asking or _LEADING.search(parent.body)):
        return [parent.id]
    while strength > 1 and parent is not None and parent.id in asking:  # a question asked under the claim
        parent = by_id.get(parent.parent)
    return [parent.id] if strength > 1 and parent is not None else []


def _own_lines(body: str) -> list[str]:
    """The comment's own non-empty lines: quoted lines are someone else's words."""
    return [line.strip() for line in body.splitlines() if line.strip() and not line.lstrip().startswith(">")]


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[*_`~]", "", text)).strip().casefold()
