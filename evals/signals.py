"""Raw signals for ``python -m evals.public``: each benchmark corpus cut into the product's units, and every
query's per-chunk scores from kb's own indexes (BM25 and its variants, each embedder on chunks and, where
sentence vectors exist, sentence-aware as the product scores it).

Documents are cut with ``ingest.chunking.split_span`` at the ``kb.tuning.INDEX.splitter`` limits (``chunks-faq``, the unit kbq
uses, and ``chunks``; ``doc`` keeps whole documents), embedded with kb's embedders and indexed with kb's
``DenseIndex`` and ``Bm25Index``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from evals.beir import DATASETS, Beir
from evals.embed_cache import Cache
from ingest.chunking import ChunkMaker, split_span
from kb.dense import DenseIndex
from kb.embed import SHORT_NAMES, Embedder
from kb.fusion import with_best_sentence
from kb.lexical import Bm25Index
from kb.store import indexed_text
from kb.text import HAN, detect_lang, sentence_spans
from kb.tuning import INDEX
from kb.types import Chunk

MODELS = SHORT_NAMES  # embedder alias -> kb model id
CHUNKINGS = {
    "chunks": INDEX.splitter.article_max_chars,
    "chunks-faq": INDEX.splitter.faq_max_chars,
    "doc": None,
}


# ---------------------------------------------------------------- units


def document_text(title: str, text: str) -> str:
    return f"{title}\n{text}" if title else text


@dataclass
class Chunked:
    chunks: list[Chunk]
    doc_starts: np.ndarray  # first chunk row of each document, in corpus order
    langs: np.ndarray  # passage language of each chunk

    @property
    def texts(self) -> list[str]:
        return [indexed_text(c) for c in self.chunks]


def chunk_corpus(
    doc_ids: Sequence[str], titles: Sequence[str], texts: Sequence[str], chunking: str
) -> Chunked:
    """Cut every document with the product's splitter (``chunks``) or keep it whole (``doc``)."""
    limit = CHUNKINGS[chunking]
    overlap = INDEX.splitter.overlap_sentences
    chunks: list[Chunk] = []
    starts = []
    for doc_id, title, body in zip(doc_ids, titles, texts, strict=True):
        text = document_text(title, body)
        lang = detect_lang(text)
        maker = ChunkMaker(doc_id, "article", text, lang)
        spans = [(0, len(text))] if limit is None else split_span(text, 0, len(text), limit, overlap)
        starts.append(len(chunks))
        chunks.extend(maker.make(a, b, section=title) for a, b in spans)
    return Chunked(chunks, np.array(starts, dtype=np.int64), np.array([c.lang for c in chunks]))


# ---------------------------------------------------------------- lexical and dense scores


# Lexical variants: kb's Bm25Index throughout; the variants only change its parameters or the text it sees.
ZH_QUESTION_WORDS = (
    "为什么",
    "什么",
    "哪个",
    "哪些",
    "哪里",
    "哪儿",
    "哪一",
    "多少",
    "怎么",
    "怎样",
    "如何",
    "是否",
    "何时",
    "多久",
    "谁",
    "几",
)
_CJK_CHAR = re.compile(f"[{HAN}]")


def with_unigrams(text: str) -> str:
    """Adds every Chinese character as its own one-character run, so kb's bigram tokeniser also emits unigrams."""
    chars = _CJK_CHAR.findall(text)
    return f"{text}\n{' '.join(chars)}" if chars else text


def normalise_query(text: str) -> str:
    """NFKC plus Chinese question words dropped (they match answers poorly)."""
    text = unicodedata.normalize("NFKC", text)
    for word in ZH_QUESTION_WORDS:
        text = text.replace(word, " ")
    return text


@dataclass(frozen=True)
class Lexical:
    cjk: str = "bigram"
    k1: float = 1.2
    b: float = 0.75
    doc: Callable[[str], str] | None = None
    query: Callable[[str], str] | None = None


LEXICAL_VARIANTS = {
    "bm25": Lexical(),  # the product's index (kb.tuning.INDEX.lexical)
    "bm25-jieba": Lexical(cjk="jieba"),
    "bm25-uni": Lexical(doc=with_unigrams, query=with_unigrams),
    "bm25-qnorm": Lexical(doc=lambda t: unicodedata.normalize("NFKC", t), query=normalise_query),
    "bm25-k0.9b0.4": Lexical(k1=0.9, b=0.4),
}
ZH_ONLY = {"bm25-jieba"}  # the other variants run everywhere (bm25-uni equals bm25 on English)


def lexical_scores(variant: Lexical, docs: Sequence[str], queries: Sequence[str]) -> np.ndarray:
    index = Bm25Index.build(
        [variant.doc(t) if variant.doc else t for t in docs], cjk=variant.cjk, k1=variant.k1, b=variant.b
    )
    out = np.zeros((len(queries), len(docs)), dtype=np.float32)
    for i, q in enumerate(queries):
        out[i] = index.scores(variant.query(q) if variant.query else q)
    return out


def dense_scores(doc_vectors: np.ndarray, query_vectors: np.ndarray) -> np.ndarray:
    """Every query's cosine to every stored vector, through kb's DenseIndex (FAISS inner product)."""
    index = DenseIndex.build(doc_vectors)
    out = np.zeros((len(query_vectors), index.size), dtype=np.float32)
    if index.size and len(query_vectors):
        sims, ids = index.index.search(np.ascontiguousarray(query_vectors, dtype=np.float32), index.size)
        np.put_along_axis(out, ids, sims, axis=1)
    return out


# ---------------------------------------------------------------- a run: every raw signal of one query set


@dataclass
class Run:
    """Raw per-chunk scores of one query set against one chunked corpus."""

    dataset: str
    chunking: str
    doc_ids: list[str]
    chunked: Chunked
    qids: list[str]
    qlangs: np.ndarray
    qrels: dict[str, dict[str, int]]
    raw: dict[str, np.ndarray]  # signal name -> (queries x chunks)

    def subset(self, qids: Sequence[str]) -> Run:
        rows = [self.qids.index(q) for q in qids]
        return Run(
            self.dataset,
            self.chunking,
            self.doc_ids,
            self.chunked,
            list(qids),
            self.qlangs[rows],
            {q: self.qrels[q] for q in qids},
            {k: v[rows] for k, v in self.raw.items()},
        )


def sentence_table(chunked: Chunked) -> tuple[np.ndarray, list[str]]:
    """Every chunk's sentences, as kb.store indexes them: (chunk row per sentence, sentence texts)."""
    rows, texts = [], []
    for row, chunk in enumerate(chunked.chunks):
        for a, b in sentence_spans(chunk.text):
            rows.append(row)
            texts.append(chunk.text[a:b])
    return np.array(rows, dtype=np.int64), texts


def build_run(
    dataset: str,
    beir: Beir,
    chunking: str,
    qids: Sequence[str],
    embedders: Mapping[str, Embedder],
    cache: Cache,
    lexical: Iterable[str] = ("bm25",),
    sentences: Iterable[str] = (),
) -> Run:
    """Raw signals: each lexical variant, each embedder on chunks and, for the aliases in ``sentences``, the
    embedder scored as the product scores it (``<model>-sent``: chunk and best sentence averaged)."""
    sentences = set(sentences)
    chunked = chunk_corpus(beir.doc_ids, beir.titles, beir.texts, chunking)
    texts = chunked.texts
    queries = [beir.queries[q] for q in qids]
    raw: dict[str, np.ndarray] = {}
    for name in lexical:
        raw[name] = lexical_scores(LEXICAL_VARIANTS[name], texts, queries)
    rows, sentence_texts = sentence_table(chunked) if sentences else (np.zeros(0, np.int64), [])
    unique = list(dict.fromkeys(sentence_texts))
    where = {t: i for i, t in enumerate(unique)}
    position = np.array([where[t] for t in sentence_texts], dtype=np.int64)
    for alias, embedder in embedders.items():
        corpus = DATASETS[dataset].corpus_key if dataset in DATASETS else dataset
        docs = cache.embed(embedder, texts, f"{corpus}-{chunking}")
        qvec = cache.embed(embedder, queries, f"{dataset}-queries", queries=True)
        raw[alias] = dense_scores(docs, qvec)
        if alias in sentences:
            svec = cache.embed(embedder, unique, f"{corpus}-sentences")[position]
            raw[f"{alias}-sent"] = with_best_sentence(raw[alias], rows, dense_scores(svec, qvec))
    return Run(
        dataset,
        chunking,
        list(beir.doc_ids),
        chunked,
        list(qids),
        np.array([detect_lang(q) for q in queries]),
        {q: beir.qrels[q] for q in qids},
        raw,
    )
