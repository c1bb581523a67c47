"""Packing spans of a document into size-limited chunks that never cut a sentence or a block."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator

from kb.text import sentence_spans
from kb.tuning import INDEX
from kb.types import Chunk, Provenance, chunk_id_for


def split_span(text: str, start: int, end: int, max_chars: int, overlap: int = 1) -> list[tuple[int, int]]:
    """Cut ``text[start:end]`` into pieces of at most ``max_chars`` at sentence boundaries,
    each piece repeating the last ``overlap`` sentences of the one before. A single sentence
    longer than the limit stays whole."""
    if end - start <= max_chars:
        return [(start, end)]
    sentences = sentence_spans(text, start, end) or [(start, end)]
    pieces: list[tuple[int, int]] = []
    i = 0
    while i < len(sentences):
        j = i
        while j + 1 < len(sentences) and sentences[j + 1][1] - sentences[i][0] <= max_chars:
            j += 1
        pieces.append((sentences[i][0], sentences[j][1]))
        if j + 1 >= len(sentences):
            break
        i = max(j + 1 - overlap, i + 1)
    return pieces


def pack_blocks(spans: Iterable[tuple[int, int]], max_chars: int) -> Iterator[tuple[int, int]]:
    """Merge consecutive block spans while the merged span stays within ``max_chars``."""
    current: tuple[int, int] | None = None
    for a, b in spans:
        if current and b - current[0] <= max_chars:
            current = (current[0], b)
            continue
        if current:
            yield current
        current = (a, b)
    if current:
        yield current


def pack_and_split(text: str, spans: Iterable[tuple[int, int]], max_chars: int) -> list[tuple[int, int]]:
    """Merge consecutive blocks up to ``max_chars``, then cut any still too long at sentences."""
    overlap = INDEX.splitter.overlap_sentences
    return [
        piece
        for a, b in pack_blocks(spans, max_chars)
        for piece in split_span(text, a, b, max_chars, overlap)
    ]


class ChunkMaker:
    """Builds chunks for one document, giving identical texts distinct ids."""

    def __init__(self, doc_id: str, kind: str, text: str, lang: str) -> None:
        self.doc_id, self.kind, self.text, self.lang = doc_id, kind, text, lang
        self._seen: Counter[str] = Counter()

    def make(
        self,
        start: int,
        end: int,
        *,
        section: str = "",
        context: str = "",
        lang: str | None = None,
        origin: Provenance | None = None,
    ) -> Chunk:
        piece = self.text[start:end]
        occurrence = self._seen[piece]
        self._seen[piece] += 1
        return Chunk(
            chunk_id=chunk_id_for(self.doc_id, piece, occurrence),
            doc_id=self.doc_id,
            kind=self.kind,
            text=piece,
            start=start,
            end=end,
            lang=lang or self.lang,
            section=section,
            context=context,
            origin=origin or Provenance(),
        )
