"""Reddit-style discussion threads in the shape of Reddit's /comments/<id>.json export.

The canonical text lists the post and then every comment in reply-tree order, each under a
one-line header; a comment's chunk spans only its body, and its parent's text rides along as
retrieval context.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import re
from dataclasses import dataclass, field
from typing import Any

from ingest.chunking import ChunkMaker, pack_and_split
from ingest.conversation import Roles, Turn, roles
from ingest.errors import IngestError
from kb.text import detect_lang
from kb.tuning import INDEX
from kb.types import COMMENT_PREFIX, Chunk, Document, Provenance

REDDIT = "https://www.reddit.com"
GONE = {"[deleted]", "[removed]"}
CONTEXT_CHARS = 400


@dataclass
class _Comment:
    id: str
    author: str
    body: str
    score: int
    created: str | None
    created_utc: float
    permalink: str
    parent_id: str
    depth: int
    children: list[_Comment] = field(default_factory=list)


def parse_thread(doc_id: str, raw: str) -> tuple[Document, list[Chunk]]:
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise IngestError(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    post, comments = _read_export(data)
    title = html.unescape(str(post.get("title") or "")).strip() or doc_id
    selftext = html.unescape(str(post.get("selftext") or "")).strip()
    post_author = _author(post.get("author"))
    permalink = str(post.get("permalink") or "")
    parts: list[str] = []
    spans: list[tuple[_Comment | None, int, int]] = []
    pos = 0

    def add(piece: str) -> tuple[int, int]:
        nonlocal pos
        parts.append(piece)
        start = pos
        pos += len(piece)
        return start, pos

    add(f"{title}\n")
    add(f"u/{post_author} posted:\n")
    if selftext and selftext not in GONE:
        spans.append((None, *add(selftext)))
        add("\n")
    ordered = _walk(comments)
    for reply in ordered:
        add(f"\n{'  ' * reply.depth}u/{reply.author} ({reply.score} points):\n")
        if reply.body in GONE or not reply.body:
            add(reply.body or "[empty]")
            add("\n")
            continue
        spans.append((reply, *add(reply.body)))
        add("\n")
    text = "".join(parts)
    lang = detect_lang(text)
    doc = Document(
        doc_id=doc_id,
        kind="thread",
        title=title,
        lang=lang,
        text=text,
        url=REDDIT + permalink if permalink else None,
        author=post_author,
        date=_date(post.get("created_utc")),
    )
    by_name = {f"{COMMENT_PREFIX}{c.id}": c for c in ordered}
    post_id = str(post.get("id") or "")
    talk = _conversation(post_id, post_author, selftext, ordered)
    post_text = f"{title}\n{selftext}".strip()
    maker = ChunkMaker(doc_id, "thread", text, lang)
    chunks = []
    for comment, start, end in spans:
        piece = text[start:end]
        if comment is None:  # a long post splits by paragraph, each piece keeping the title as context
            origin = Provenance(
                url=doc.url,
                author=post_author,
                date=doc.date,
                comment_id=post_id,
                score=_int(post.get("score")),
                disputed_by=talk.disputed_by.get(post_id, ()),
                asks=post_id in talk.asks,
            )
            for a, b in _paragraph_pieces(text, start, end):
                chunks.append(
                    maker.make(a, b, section=title, lang=detect_lang(text[a:b]), context=title, origin=origin)
                )
            continue
        parent = by_name.get(comment.parent_id)
        context = parent.body if parent and parent.body not in GONE else post_text
        origin = Provenance(
            url=REDDIT + comment.permalink if comment.permalink else doc.url,
            author=comment.author,
            date=comment.created,
            comment_id=comment.id,
            parent_id=comment.parent_id,
            parent_author=parent.author if parent else post_author,
            score=comment.score,
            depth=comment.depth,
            disputed_by=talk.disputed_by.get(comment.id, ()),
            corrects=talk.corrects.get(comment.id, ()),
            asks=comment.id in talk.asks,
        )
        chunks.append(
            maker.make(
                start,
                end,
                section=title,
                lang=detect_lang(piece),
                context=context[:CONTEXT_CHARS],
                origin=origin,
            )
        )
    return doc, chunks


def _conversation(post_id: str, post_author: str, selftext: str, comments: list[_Comment]) -> Roles:
    """Who corrects whom, with comments in the order they were written (the export's tree order
    when it has no timestamps)."""
    ordered = sorted(enumerate(comments), key=lambda ic: (ic[1].created_utc or 0.0, ic[0]))
    turns = [Turn(post_id, post_author, selftext, "")]
    turns += [Turn(c.id, c.author, c.body, c.parent_id.partition("_")[2]) for _, c in ordered]
    return roles(turns)


def _paragraph_pieces(text: str, start: int, end: int) -> list[tuple[int, int]]:
    paragraphs = [
        (start + m.start(), start + m.end())
        for m in re.finditer(r"\S(?:.*?\S)?(?=\n\s*\n|\Z)", text[start:end], re.S)
    ]
    return pack_and_split(text, paragraphs, INDEX.splitter.article_max_chars)


def _read_export(data: Any) -> tuple[dict[str, Any], list[_Comment]]:
    """The post and the comment forest; 'more' stubs (comments not in the export) are left out."""
    if not (isinstance(data, list) and len(data) == 2 and all(isinstance(x, dict) for x in data)):
        raise IngestError("not a Reddit comments export: expected a JSON array of two listings")
    posts = _children(data[0])
    if not posts or posts[0].get("kind") != "t3":
        raise IngestError("not a Reddit comments export: the first listing holds no t3 post")
    post = posts[0].get("data") or {}
    roots: list[_Comment] = []
    stack: list[tuple[dict[str, Any], list[_Comment], int]] = [(data[1], roots, 0)]
    while stack:
        listing, into, depth = stack.pop()
        for child in _children(listing):
            kind, cdata = child.get("kind"), child.get("data") or {}
            if kind != "t1":
                continue
            comment = _comment(cdata, depth)
            into.append(comment)
            if isinstance(cdata.get("replies"), dict):
                stack.append((cdata["replies"], comment.children, depth + 1))
    return post, roots


def _children(listing: Any) -> list[dict[str, Any]]:
    if not isinstance(listing, dict):
        return []
    children = (listing.get("data") or {}).get("children") or []
    return [c for c in children if isinstance(c, dict)]


def _comment(data: dict[str, Any], depth: int) -> _Comment:
    return _Comment(
        id=str(data.get("id") or ""),
        author=_author(data.get("author")),
        body=html.unescape(str(data.get("body") or "")).strip(),
        score=_int(data.get("score")),
        created=_date(data.get("created_utc")),
        created_utc=_float(data.get("created_utc")),
        permalink=str(data.get("permalink") or ""),
        parent_id=str(data.get("parent_id") or ""),
        depth=depth,
    )


def _walk(comments: list[_Comment]) -> list[_Comment]:
    out: list[_Comment] = []
    stack = list(reversed(comments))
    while stack:
        c = stack.pop()
        out.append(c)
        stack.extend(reversed(c.children))
    return out


def _author(value: Any) -> str:
    return str(value) if value else "[deleted]"


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def _date(value: Any) -> str | None:
    try:
        return dt.datetime.fromtimestamp(float(value), tz=dt.UTC).date().isoformat()
    except (TypeError, ValueError, OverflowError, OSError):
        return None
