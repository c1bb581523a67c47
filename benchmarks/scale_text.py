"""Documents for ``python -m benchmarks.scale``, recombined from real text.

Sentences come from corpus/ (through ingest's own parsers), the SciFact abstracts and the XQuAD English
and Chinese paragraphs under ../shared/bench. A generated document walks through source passages (runs of
consecutive sentences of one abstract, paragraph or corpus file, in one language), so neighbouring chunks
read as they did in their source. Its chunks are paragraphs of 1-5 sentences up to ``CHUNK_CHARS``; its
answer units are ``kb.text.sentence_spans`` of each chunk, exactly as ingest computes them for an article.

Document ``i`` depends only on (seed, i, variant): any size is a prefix of a larger one, and a document can
be regenerated alone (``variant=1`` is its changed version, for the one-document upsert).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kb.text import detect_lang, sentence_spans
from kb.types import Chunk, Document, chunk_id_for

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT.parent / "shared" / "bench"
LANGS = ("en", "zh")
CHUNK_CHARS = {"en": 480, "zh": 320}  # around the article splitter's 360 (kb.tuning INDEX.splitter); a
# Chinese character says more than a Latin one, and real chunks average ~2.6 answer units in both languages
UNITS_PER_CHUNK = (0.1, 0.25, 0.3, 0.25, 0.1)  # P(1..5 sentences); the char limit trims the long ones
CHUNKS_PER_DOC = (1, 8)  # uniform, inclusive
KINDS = (("article", 0.8), ("faq", 0.12), ("thread", 0.08))
_TERMINAL = ".!?。！？；;)\"'”’」』）]"


@dataclass(frozen=True)
class Sentences:
    """Every usable distinct sentence, and the passages (runs of sentence ids) they came in."""

    texts: list[str]
    lang: np.ndarray  # 'en' / 'zh' per sentence
    source: np.ndarray  # 'corpus' / 'scifact' / 'xquad' per sentence
    passages: dict[str, list[np.ndarray]]  # per language, sentence ids in source order

    def ids(self, lang: str) -> np.ndarray:
        return np.flatnonzero(self.lang == lang)


@dataclass(frozen=True)
class GenDoc:
    """One generated document ready for kb.store.DocumentRecord, plus the sentence behind each unit."""

    document: Document
    chunks: list[Chunk]
    units: list[tuple[int, int, int]]  # (chunk index, start, end) in document.text
    unit_sentence: np.ndarray  # sentence id per unit, -1 when a unit is not one source sentence
    digest: str


def _usable(text: str) -> bool:
    """A sentence that splits back to itself and ends a sentence, so joining sentences keeps units."""
    if not 8 <= len(text) <= max(CHUNK_CHARS.values()) or "\n" in text or text.lstrip()[:1] in "#|>":
        return False
    return text.rstrip()[-1:] in _TERMINAL and sentence_spans(text) == [(0, len(text))]


def _corpus_passages() -> Iterator[tuple[str, list[str]]]:
    from ingest.loader import load_corpus  # the product's parsers, so corpus/ reads as ingest reads it

    for parsed in load_corpus(ROOT / "corpus").parsed:
        text = parsed.document.text
        yield "corpus", [text[a:b] for c in parsed.chunks for a, b in sentence_spans(text, c.start, c.end)]


def _bench_passages(bench: Path) -> Iterator[tuple[str, list[str]]]:
    for name, folder in (("scifact", "scifact"), ("xquad", "xquad/en"), ("xquad", "xquad/zh")):
        with (bench / folder / "corpus.jsonl").open(encoding="utf-8") as fh:
            for line in fh:
                text = json.loads(line)["text"]
                yield name, [text[a:b] for a, b in sentence_spans(text)]


def load_sentences(bench: Path = BENCH) -> Sentences:
    """The sentence universe, deterministic (source order, first occurrence of a text wins)."""
    index: dict[str, int] = {}
    langs: list[str] = []
    sources: list[str] = []
    passages: dict[str, list[np.ndarray]] = {lang: [] for lang in LANGS}
    for source, texts in [*_corpus_passages(), *_bench_passages(bench)]:
        runs: dict[str, list[int]] = {lang: [] for lang in LANGS}
        for text in texts:
            if not _usable(text):
                continue
            if text not in index:
                index[text] = len(index)
                langs.append(detect_lang(text))
                sources.append(source)
            runs[langs[index[text]]].append(index[text])
        for lang, run in runs.items():
            if run:
                passages[lang].append(np.array(run, np.int64))
    return Sentences(list(index), np.array(langs), np.array(sources), passages)


class DocumentMaker:
    """Generates document ``i`` of the synthetic corpus from the sentence universe."""

    def __init__(self, sentences: Sentences, seed: int, zh_share: float = 0.5) -> None:
        self.sentences = sentences
        self.seed = seed
        self.zh_share = zh_share
        self._ids = {text: i for i, text in enumerate(sentences.texts)}

    def make(self, i: int, variant: int = 0, max_chunks: int | None = None) -> GenDoc:
        shape = np.random.default_rng([self.seed, i])  # a changed version keeps id, language and kind
        lang = "zh" if shape.random() < self.zh_share else "en"
        n_chunks = int(shape.integers(CHUNKS_PER_DOC[0], CHUNKS_PER_DOC[1] + 1))
        n_chunks = min(n_chunks, max_chunks or n_chunks)
        kind = str(shape.choice([k for k, _ in KINDS], p=[p for _, p in KINDS]))
        paragraphs = self._paragraphs(np.random.default_rng([self.seed, i, variant]), lang, n_chunks)
        doc_id = f"scale/{lang}/{i:07d}"
        text = "\n\n".join(paragraphs)
        title = paragraphs[0][:60]
        document = Document(doc_id, kind, title, lang, text, date="2020-01-01")
        chunks, units, unit_sentence = [], [], []
        start = 0
        for n, paragraph in enumerate(paragraphs):
            end = start + len(paragraph)
            occurrence = sum(p == paragraph for p in paragraphs[:n])
            section = title if kind == "faq" else ""
            chunks.append(
                Chunk(
                    chunk_id_for(doc_id, paragraph, occurrence),
                    doc_id,
                    kind,
                    paragraph,
                    start,
                    end,
                    lang,
                    section,
                )
            )
            for a, b in sentence_spans(text, start, end):
                units.append((n, a, b))
                unit_sentence.append(self._ids.get(text[a:b], -1))
            start = end + 2
        digest = hashlib.sha256(f"{variant}\x00{text}".encode()).hexdigest()
        return GenDoc(document, chunks, units, np.array(unit_sentence, np.int64), digest)

    def _paragraphs(self, rng: np.random.Generator, lang: str, n_chunks: int) -> list[str]:
        passages = self.sentences.passages[lang]
        texts = self.sentences.texts
        join = "" if lang == "zh" else " "
        run = passages[int(rng.integers(len(passages)))]
        pos = int(rng.integers(len(run)))
        out = []
        for _ in range(n_chunks):
            want = int(rng.choice(len(UNITS_PER_CHUNK), p=UNITS_PER_CHUNK)) + 1
            picked: list[str] = []
            while len(picked) < want:
                if pos >= len(run):  # the passage ran out: continue with another one
                    run, pos = passages[int(rng.integers(len(passages)))], 0
                sentence = texts[run[pos]]
                if picked and len(join.join([*picked, sentence])) > CHUNK_CHARS[lang]:
                    break
                picked.append(sentence)
                pos += 1
            out.append(join.join(picked))
        return out

    def batches(self, n_chunks: int, batch_docs: int = 2000) -> Iterator[list[GenDoc]]:
        """Documents 0, 1, … in batches until they hold ``n_chunks`` chunks in all."""
        left, i = n_chunks, 0
        while left > 0:
            batch: list[GenDoc] = []
            while left > 0 and len(batch) < batch_docs:
                doc = self.make(i, max_chunks=left)
                left -= len(doc.chunks)
                batch.append(doc)
                i += 1
            yield batch
