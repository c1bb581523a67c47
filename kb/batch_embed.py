"""Embedding for ingest: every changed document's chunks and sentences in a few large batches per model,
each distinct text once.

Why: embedding is nearly all of an ingest. Per document, each model ran a handful of small batches; a
sentence that is a whole chunk (a one-sentence comment) was embedded twice, and so was a text repeated
across documents. Here the chunk texts of all documents go to each model as one list (the encoders sort
by length, so similar lengths share a padded batch), then the sentence texts not already embedded as a
chunk. The time of each half is kept, so ingest reports chunks and sentences per second per model. A
sentence-only model (kb.store.chunk_models) embeds the distinct sentence texts and no chunk.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from kb.embed import Embedder


@dataclass(frozen=True)
class EmbedStats:
    """One model's share of an ingest: distinct texts embedded and the seconds they took."""

    model_id: str
    chunks: int
    chunk_seconds: float
    sentences: int  # distinct sentence texts not already embedded as a chunk (for a sentence-only model: all)
    sentence_seconds: float
    reused: int  # texts that were not embedded again: repeats, and sentences that are a whole chunk

    def to_dict(self) -> dict[str, object]:
        rate = {
            "chunks_per_s": self.chunks / self.chunk_seconds if self.chunk_seconds else 0.0,
            "sentences_per_s": self.sentences / self.sentence_seconds if self.sentence_seconds else 0.0,
        }
        return {**asdict(self), **{k: round(v, 1) for k, v in rate.items()}}


Vectors = dict[str, np.ndarray]  # model id -> (texts, dim)


def embed_documents(
    chunk_texts: Sequence[Sequence[str]],
    sentence_texts: Sequence[Sequence[str]],
    embedders: Sequence[Embedder],
    sentence_only: Collection[str] = (),
) -> tuple[list[Vectors], list[Vectors], list[EmbedStats]]:
    """Per document, its chunk vectors and its sentence vectors for every model (chunk vectors only for
    models not in ``sentence_only``); and per model, what it embedded. ``chunk_texts[i]`` and
    ``sentence_texts[i]`` are document i's texts, in order."""
    slots: dict[str, int] = {}
    chunk_slots = [[slots.setdefault(t, len(slots)) for t in texts] for texts in chunk_texts]
    n_chunks = len(slots)
    sentence_slots = [[slots.setdefault(t, len(slots)) for t in texts] for texts in sentence_texts]
    unique = list(slots)
    n_sentences = sum(map(len, sentence_texts))
    total = sum(map(len, chunk_texts)) + n_sentences
    # a sentence-only model embeds every distinct sentence text, those that are a whole chunk too
    spoken = sorted({s for slots_of in sentence_slots for s in slots_of})
    table: Vectors = {}
    stats = []
    for embedder in embedders:
        started = time.perf_counter()
        if embedder.model_id in sentence_only:
            middle = started
            vectors = embedder.embed_documents([unique[s] for s in spoken])
            done = time.perf_counter()
            full = np.zeros((len(unique), vectors.shape[1]), np.float32)
            full[spoken] = vectors
            table[embedder.model_id] = full
            stats.append(
                EmbedStats(embedder.model_id, 0, 0.0, len(spoken), done - middle, n_sentences - len(spoken))
            )
            continue
        chunks = embedder.embed_documents(unique[:n_chunks])
        middle = time.perf_counter()
        sentences = embedder.embed_documents(unique[n_chunks:])
        done = time.perf_counter()
        table[embedder.model_id] = np.vstack([chunks, sentences]).astype(np.float32, copy=False)
        stats.append(
            EmbedStats(
                embedder.model_id,
                n_chunks,
                middle - started,
                len(unique) - n_chunks,
                done - middle,
                total - len(unique),
            )
        )

    def gather(per_doc: list[list[int]], models: Collection[str]) -> list[Vectors]:
        return [
            {mid: v[rows].reshape(len(rows), v.shape[1]) for mid, v in table.items() if mid in models}
            for rows in (np.asarray(r, dtype=np.int64) for r in per_doc)
        ]

    with_chunks = [m for m in table if m not in sentence_only]
    return gather(chunk_slots, with_chunks), gather(sentence_slots, list(table)), stats
