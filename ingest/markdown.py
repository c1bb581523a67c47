"""Markdown helpers: YAML front matter and top-level blocks with exact character spans."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

import yaml
from markdown_it import MarkdownIt

from ingest.errors import IngestError

_FRONT = re.compile(r"\A---[ \t]*\n(.*?)^---[ \t]*\n?", re.S | re.M)
_MD = MarkdownIt("commonmark").enable("table")


@dataclass(frozen=True)
class Block:
    """One top-level Markdown block; ``start``/``end`` index the body text."""

    type: str
    start: int
    end: int
    level: int = 0  # heading level, 0 for other blocks
    heading: str = ""  # heading text
    heading_start: int = 0  # where the heading text starts (after the '#' marks)


def split_front_matter(raw: str) -> tuple[dict[str, Any], str]:
    """Return (metadata, body). The body is the text after the front matter, leading blank lines removed."""
    if not raw.startswith("---"):
        return {}, raw.lstrip("\n")
    m = _FRONT.match(raw)
    if not m:
        raise IngestError("front matter starts with '---' but has no closing '---' line")
    try:
        meta = yaml.safe_load(m.group(1)) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 2})" if mark else ""
        raise IngestError(f"front matter is not valid YAML{where}") from None
    if not isinstance(meta, dict):
        raise IngestError("front matter must be a YAML mapping of keys to values")
    meta = {str(k): _plain(v) for k, v in meta.items()}
    return meta, raw[m.end() :].lstrip("\n")


def _plain(value: Any) -> Any:
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()[:10]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def blocks(body: str) -> list[Block]:
    """Top-level blocks of ``body``: headings, paragraphs, lists, code, tables, quotes."""
    line_starts = [0]
    for m in re.finditer("\n", body):
        line_starts.append(m.end())
    line_starts.append(len(body))
    tokens = _MD.parse(body)
    out: list[Block] = []
    for i, tok in enumerate(tokens):
        if tok.level != 0 or tok.map is None or tok.nesting == -1:
            continue
        first, last = tok.map
        start = line_starts[min(first, len(line_starts) - 1)]
        end = line_starts[min(last, len(line_starts) - 1)]
        while end > start and body[end - 1].isspace():
            end -= 1
        kind = tok.type.removesuffix("_open")
        if kind == "heading":
            text = tokens[i + 1].content.strip()
            line = body[start:end]
            offset = line.find(text) if text else -1
            heading_start = start + offset if offset >= 0 else start
            out.append(Block(kind, start, end, int(tok.tag[1]), text, heading_start))
        else:
            out.append(Block(kind, start, end))
    return out
