"""Document ids from source paths: stable, reversible, and safe as URL path segments.

A doc id is the source's path inside the corpus without its suffix (``faq/c5-migration.en``). Letters and
digits of any script and ``-``, ``_`` and ``.`` stay as they are; every other character (a space, a newline,
``?``, ``#``, ``%``, a control or format character) becomes ``~`` and two hex digits per UTF-8 byte, and ``~``
itself becomes ``~7E``. So ``faq/my notes.md`` is ``faq/my~20notes``: a link built from the id reaches the
document however naively it is put into a URL, and ``source_path`` gives the file name back.
"""

from __future__ import annotations

import re
from pathlib import PurePath, PurePosixPath

_KEPT = frozenset("-_.")
_ESCAPED = re.compile(r"(?:~[0-9A-F]{2})+")


def _kept(ch: str) -> bool:
    return ch in _KEPT or (ch.isalnum() and ch.isprintable())


def safe_segment(name: str) -> str:
    """``name`` with every character that is not safe in a URL path segment escaped as ``~XX``."""
    out = "".join(ch if _kept(ch) else "".join(f"~{b:02X}" for b in ch.encode("utf-8")) for ch in name)
    if out in (".", ".."):  # never a path step; hidden names (leading dot) are skipped before this
        out = out.replace(".", "~2E")
    return out


def doc_id_for(rel: PurePath) -> str:
    """The doc id of the source at ``rel`` (relative to the corpus folder)."""
    return "/".join(safe_segment(part) for part in rel.with_suffix("").parts)


def source_path(doc_id: str) -> PurePosixPath:
    """The source's path inside the corpus, without its suffix: the inverse of ``doc_id_for``."""

    def unescape(match: re.Match[str]) -> str:
        raw = bytes(int(match.group(0)[i + 1 : i + 3], 16) for i in range(0, len(match.group(0)), 3))
        return raw.decode("utf-8", errors="replace")

    return PurePosixPath(*(_ESCAPED.sub(unescape, part) for part in doc_id.split("/")))
