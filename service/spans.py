"""Spans of a document's canonical text, as the API and the source view take them: ``?start=&end=``."""

from __future__ import annotations

import re

from kb.types import Document
from service.errors import ApiError

BLANK_LINE = re.compile(r"\n[ \t]*\n")
MAX_DIGITS = 15


def checked_span(doc: Document, start: int | str | None, end: int | str | None) -> tuple[int, int] | None:
    """``(start, end)`` once both are whole numbers with ``0 <= start < end <= len(doc.text)``; None when
    neither was given; ApiError 422 ``invalid_range`` otherwise."""
    if start is None and end is None:
        return None
    a, b = _whole(start), _whole(end)
    if a is None or b is None or not 0 <= a < b <= len(doc.text):
        raise ApiError(
            422,
            "invalid_range",
            f"start and end must both be given, as whole numbers with 0 <= start < end <= "
            f"{len(doc.text)} (the length of {doc.doc_id})",
        )
    return a, b


def _whole(value: int | str | None) -> int | None:
    """A whole number from ASCII digits only (``²`` and ``١`` pass ``str.isdigit``), and not so long that
    ``int`` refuses it: no document is anywhere near 10**15 characters."""
    if isinstance(value, int):
        return value
    if value is None or not (value.isascii() and value.isdigit() and len(value) <= MAX_DIGITS):
        return None
    return int(value)


def paragraph_bounds(text: str, start: int, end: int) -> tuple[int, int]:
    """Widen ``[start, end)`` to the blank lines around it, without the surrounding whitespace."""
    before = [m.end() for m in BLANK_LINE.finditer(text, 0, start + 1) if m.end() <= start]
    p_start = before[-1] if before else 0
    after = BLANK_LINE.search(text, end)
    p_end = after.start() if after else len(text)
    while p_start < start and text[p_start].isspace():
        p_start += 1
    while p_end > end and text[p_end - 1].isspace():
        p_end -= 1
    return p_start, p_end
