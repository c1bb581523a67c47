"""The store interface: everything retrieval and answering read, and everything ingest writes, whatever
holds it. ``KB_STORE`` picks the implementation (kb/stores.py: ``open_store``, ``open_writer``):

- ``local`` (default, kb/local_store.py): files beside the index link, one small exact index up to
  ``INDEX.store.exact_below`` chunks, approximate (IVF) dense search above it, vectors memory-mapped;
- ``milvus`` (kb/milvus_store.py): one Milvus collection of chunks (dense vectors and kb's own BM25
  weights as sparse vectors) and one of sentences, at ``KB_MILVUS_URI`` (a Milvus Lite file, a standalone
  server or a cluster).

tests/kb/test_store_contract.py runs one suite against both.

Rows and sentence ids are integers that name a chunk and a sentence within one published version; they
need not be dense or start at 0, and another version may number them differently (a merge renumbers).
Within a version, a deleted or replaced chunk's row is never returned.
Retrieval either scores every live row (``exact``: small corpora, the results of a plain scan) or
gathers candidates from ``dense_search`` and ``lexical_search`` and scores only those (kb/retrieve.py);
both then fuse the same way.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

import numpy as np

from kb.tuning import INDEX, RETRIEVAL
from kb.types import Chunk, Document

if TYPE_CHECKING:
    from kb.embed import Embedder

# 7: a reply to a comment indexed under that comment (indexed_text); 6: Chinese lexical terms in simplified
# characters (kb.text.simplified); 5: sentence-only models; 4: segments (kb/local_store.py); 3: typed chunk
# provenance fields
FORMAT = 7
STORES = ("local", "milvus")


class IndexUnavailable(RuntimeError):
    """The index is missing, corrupt or built differently; the message names the fix."""


@dataclass(frozen=True)
class Scored:
    """Rows (ascending) with one score each."""

    rows: np.ndarray  # int64
    scores: np.ndarray  # float32

    @classmethod
    def empty(cls) -> Scored:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.float32))


@dataclass(frozen=True)
class SentenceRows:
    """The answer units (sentences) of some chunks, in row order and, within a chunk, in text order;
    ``vectors[model_id][i]`` is sentence i's unit vector. Sentence ids ascend with rows."""

    sid: np.ndarray  # int64
    row: np.ndarray  # int64, the chunk each sentence belongs to
    start: np.ndarray  # int32, offsets in the chunk's document text
    end: np.ndarray  # int32
    vectors: Mapping[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.sid)

    def only(self, models: Collection[str] | None) -> SentenceRows:
        """The same sentences with the vectors of ``models`` only (all when None)."""
        if models is None:
            return self
        return replace(self, vectors={m: self.vectors[m] for m in models})

    @classmethod
    def empty(cls, dims: Mapping[str, int]) -> SentenceRows:
        none = np.zeros(0, np.int64)
        cut = np.zeros(0, np.int32)
        return cls(none, none, cut, cut, {m: np.zeros((0, d), np.float32) for m, d in dims.items()})


@dataclass
class DocumentRecord:
    """One document ready to store: its chunks, their answer units, and per model their vectors (chunk vectors
    only for models that have them, kb.store.chunk_models)."""

    document: Document
    chunks: list[Chunk]
    digest: str  # the source's digest: an unchanged source is not parsed or embedded again
    units: list[tuple[int, int, int]]  # (chunk index, start, end): answer units, in chunk and text order
    vectors: dict[str, np.ndarray] = field(
        default_factory=dict
    )  # per model with chunk vectors, (chunks, dim)
    unit_vectors: dict[str, np.ndarray] = field(default_factory=dict)  # per model, (units, dim)


class Store(Protocol):
    """One published version of the index, read-only. Thread-safe for readers."""

    @property
    def manifest(self) -> dict:
        """``build_settings`` plus ``version``, ``created`` and ``counts`` (documents, chunks, sentences)."""

    @property
    def version(self) -> str: ...

    @property
    def exact(self) -> bool:
        """Score every live row for every question (the corpus is small enough)."""

    @property
    def dims(self) -> dict[str, int]:
        """Vector dimensions per model id, in the order the index was built with."""

    def size(self) -> int:
        """Live chunks."""

    def live_rows(self) -> np.ndarray:
        """Every live row, ascending (called only when ``exact``)."""

    def langs(self, rows: np.ndarray) -> np.ndarray:
        """Each row's chunk language ('en' or 'zh'), as a numpy string array."""

    def kinds(self, rows: np.ndarray) -> np.ndarray:
        """Each row's source kind (kb.types.KINDS)."""

    def chunk(self, row: int) -> Chunk: ...

    def document(self, doc_id: str) -> Document | None: ...

    def document_ids(self) -> list[str]:
        """Every live document, sorted."""

    def digests(self) -> dict[str, str]:
        """Each live document's source digest, for ingest to see what changed."""

    def document_rows(self, doc_id: str) -> np.ndarray:
        """The rows of one document's chunks, in document order (empty when it is not stored)."""

    def dense_search(self, model_id: str, vector: np.ndarray, k: int) -> Scored:
        """About the ``k`` live rows whose chunk vectors are closest to ``vector``, a unit vector as every
        embedder gives (approximate search may miss some), with their exact cosines. Only a model of
        ``chunk_models(manifest)`` has chunk vectors, for this and the two methods below."""

    def dense_scores(self, model_id: str, vector: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Exact cosine of the unit ``vector`` to each row's chunk vector."""

    def chunk_vectors(self, model_id: str, rows: np.ndarray) -> np.ndarray:
        """The rows' unit chunk vectors, (rows, dim) float32."""

    def lexical_search(self, query: str, k: int) -> Scored:
        """The ``k`` live rows with the highest BM25 scores for ``query`` (only rows sharing a term)."""

    def lexical_scores(self, query: str, rows: np.ndarray) -> np.ndarray:
        """BM25 of ``query`` against each row (kb.lexical), 0 where it shares no term."""

    def sentences(self, rows: np.ndarray, models: Collection[str] | None = None) -> SentenceRows:
        """The answer units of ``rows`` (ascending), with the vectors of ``models`` (every indexed model
        when None): search reads its embedders' and only answering the relevance model's."""

    def sample_rows(self) -> np.ndarray:
        """A fixed sample of live rows, ascending, whose scores stand for the whole corpus when
        retrieval normalises a signal (every live row when ``exact``)."""

    def term_weight(self, term: str) -> float:
        """The term's BM25 idf over live rows; a term no chunk uses counts as the rarest."""

    def stated(self, term: str, inside: bool = False) -> bool:
        """Whether some quotable chunk (kb.types.quotable: not a corrected claim, not a question) or its
        context uses ``term`` (kb.text.tokenize); ``inside``: or a longer token that contains it
        (``board_asset_tag`` in a path), which an exact store checks and a large one may not."""

    def close(self) -> None: ...


class StoreBase:
    """What every store keeps the same way: its manifest, its dimensions, whether it is exact, and its
    normalisation sample. Subclasses set ``_manifest``, ``_dims``, ``_exact`` and ``_rows`` (live rows)."""

    _manifest: dict
    _dims: dict[str, int]
    _exact: bool
    _rows: np.ndarray
    _sample: np.ndarray | None = None

    @property
    def manifest(self) -> dict:
        return self._manifest

    @property
    def version(self) -> str:
        return str(self._manifest["version"])

    @property
    def exact(self) -> bool:
        return self._exact

    @property
    def dims(self) -> dict[str, int]:
        return dict(self._dims)

    def size(self) -> int:
        return len(self._rows)

    def _with_chunks(self, model_id: str) -> None:
        """Dense search and chunk vectors exist only for models with chunk vectors (``chunk_models``)."""
        if model_id not in chunk_models(self._manifest):
            raise ValueError(f"{model_id} has no chunk vectors in this index (it embeds answer units only)")

    def live_rows(self) -> np.ndarray:
        return self._rows

    def sample_rows(self) -> np.ndarray:
        """Every live row when exact; else ``RETRIEVAL.sample_rows`` of them, drawn once per version."""
        if self._exact:
            return self._rows
        if self._sample is None:
            seed = int.from_bytes(hashlib.sha256(self.version.encode()).digest()[:8], "little")
            n = min(RETRIEVAL.sample_rows, len(self._rows))
            self._sample = np.sort(np.random.default_rng(seed).choice(self._rows, size=n, replace=False))
        return self._sample


class StoreWriter(Protocol):
    """Changes to the index, invisible to readers until ``publish``. One writer at a time."""

    def digests(self) -> dict[str, str]:
        """What the version being changed holds (empty after a rebuild)."""

    @property
    def rebuilt(self) -> str | None:
        """Why the writer started from empty (a setting changed, a rebuild was asked), or None."""

    def upsert(self, records: Iterable[DocumentRecord]) -> None:
        """Store these documents, replacing any stored version of each."""

    def delete(self, doc_ids: Iterable[str]) -> None: ...

    def publish(self) -> str:
        """Make every change so far visible to new readers at once; returns the new version."""

    def current(self) -> str:
        """The published version when nothing changed."""

    def close(self) -> None:
        """Release the writer; unpublished changes are dropped."""


def indexed_text(chunk: Chunk) -> str:
    """The text a chunk is embedded and lexically indexed under: a piece of an FAQ answer or article under its
    question or heading path, and a reply to a comment under that comment. A reply rarely names what it
    answers ("盘挂不上的时候系统不会卡在启动阶段，照常起来" under "请问 nofail 是干嘛用的？"; "Add
    `x-systemd.device-timeout=10` next to `nofail`" under the complaint about waiting at boot), so on its own
    text it was not among the passages read for the questions it answers (5-fold on the 2,130 tune questions,
    calibration refit per fold: support 0.831 -> 0.856, abstention P / R 0.816 / 0.816 -> 0.815 / 0.821,
    recall@5 0.927 -> 0.948, language match 0.974 -> 0.960: more labelled reports in the other language). A
    comment on the post keeps its own text: the post, shared by every such comment, would make them alike
    (with it: 5-fold with the adapter fixed 1.791 -> 1.790, language match 0.964 -> 0.957)."""
    if chunk.context and (chunk.kind in ("faq", "article") or chunk.answers_comment):
        return f"{chunk.context}\n{chunk.text}"
    return chunk.text


def file_slug(model_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", model_id)[-80:]


def build_settings(
    embedders: Sequence[Embedder], parser_version: str, sentence_only: Collection[str] = ()
) -> dict:
    """What an index was built under; when any of it differs, the next ingest rebuilds everything.
    ``settings_hash`` covers kb.tuning.INDEX, the text rules' code and the parsers' version.
    ``sentence_only``: models that embed answer units but not chunks (see ``chunk_models``)."""
    return {
        "format": FORMAT,
        "embedders": [
            {"id": e.model_id, "dim": e.dim, "chunks": e.model_id not in sentence_only} for e in embedders
        ],
        "settings": INDEX.to_dict(),
        "settings_hash": INDEX.digest(parser_version),
    }


def chunk_models(settings: Mapping) -> list[str]:
    """The models whose chunk vectors an index (``settings``: its manifest or build settings) holds, for
    dense search. The others embed answer units only: the relevance model, which only answering reads,
    would otherwise embed every chunk for nothing (a third of an ingest with the default models)."""
    return [e["id"] for e in settings["embedders"] if e.get("chunks", True)]


def check_roles(manifest: Mapping, where: object, retrieval_ids: Sequence[str]) -> None:
    """Raise ``IndexUnavailable`` when a retrieval embedder has no chunk vectors in the index: it was built
    as the relevance model, which embeds answer units only (the roles changed since the last ingest)."""
    missing = [m for m in retrieval_ids if m not in chunk_models(manifest)]
    if missing:
        raise IndexUnavailable(
            f"index at {where} holds no chunk vectors for {'+'.join(missing)} (built as the relevance "
            "model): run `kbq ingest` to rebuild it"
        )


def check_models(manifest: Mapping, where: object, model_ids: Sequence[str] | None) -> None:
    """Raise ``IndexUnavailable`` naming the fix when the index is another format or other models."""
    if manifest.get("format") != FORMAT:
        raise IndexUnavailable(
            f"index at {where} has format {manifest.get('format')}, this kbq reads "
            f"format {FORMAT}: run `kbq ingest --rebuild`"
        )
    built = [e["id"] for e in manifest["embedders"]]
    if model_ids is not None and built != list(model_ids):
        raise IndexUnavailable(
            f"index at {where} was built with {'+'.join(built)} but KB_EMBED_MODEL "
            f"asks for {'+'.join(model_ids)}: run `kbq ingest` to rebuild it"
        )


def comments(store: Store, doc_id: str) -> dict[str, tuple[int, Chunk]]:
    """A thread's comments by comment id, in document order: (row, chunk)."""
    out = {}
    for row in store.document_rows(doc_id).tolist():
        chunk = store.chunk(int(row))
        if chunk.origin.comment_id:
            out[chunk.origin.comment_id] = (int(row), chunk)
    return out


def iter_chunks(store: Store) -> Iterator[tuple[int, Chunk]]:
    """Every live (row, chunk), for evaluation and tools over small corpora."""
    for doc_id in store.document_ids():
        for row in store.document_rows(doc_id).tolist():
            yield int(row), store.chunk(int(row))
