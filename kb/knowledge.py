"""The knowledge base: one loaded index with its retriever and answerer, reloaded in place when
``kbq ingest`` swaps in a new version. Requests in flight keep the state they started with."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from kb.answer import Answerer, check_question
from kb.calibration import Calibration
from kb.config import Settings
from kb.embed import Embedder, embedder_names, load_embedder, relevance_name
from kb.indexer import SourceRecord, UpdateReport, update_index
from kb.retrieve import Retriever, Weights
from kb.store import Store, check_roles
from kb.stores import current_version, open_store
from kb.types import Answer, Document, Hit


@dataclass(frozen=True)
class _State:
    store: Store
    retriever: Retriever
    answerer: Answerer


def embedders_for(settings: Settings) -> list[Embedder]:
    return [load_embedder(name, settings.model_cache_dir) for name in embedder_names(settings.embed_model)]


def indexed_names(settings: Settings) -> list[str]:
    """The models the index holds vectors of: the retrieval embedders, then the relevance model."""
    names = embedder_names(settings.embed_model)
    relevance = relevance_name(settings.relevance_model)
    return names + [relevance] if relevance and relevance not in names else names


def sentence_only_names(settings: Settings) -> list[str]:
    """The indexed models that only answering reads, so they embed answer units and not chunks: the
    relevance model, unless it also retrieves."""
    return indexed_names(settings)[len(embedder_names(settings.embed_model)) :]


def build_index(
    settings: Settings,
    sources: list[SourceRecord],
    parser_version: str,
    rebuild: bool = False,
    progress: Callable[[int, int], None] | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> UpdateReport:
    """Incrementally (re)build the index folder named by ``settings.index_dir``; ``on_wait`` hears who
    holds the writer lock when another ingest is running (see ``kb.indexer.update_index``)."""
    return update_index(
        settings,
        sources,
        [load_embedder(name, settings.model_cache_dir) for name in indexed_names(settings)],
        parser_version,
        rebuild,
        progress,
        lock_timeout=settings.ingest_lock_timeout,
        on_wait=on_wait,
        sentence_only=sentence_only_names(settings),
    )


class KnowledgeBase:
    def __init__(
        self,
        settings: Settings,
        weights: Weights | None = None,
        calibration: Calibration | None = None,
        fast_start: bool = False,
    ) -> None:
        self.settings = settings
        self._weights = weights
        self._calibration = calibration
        self._fast_start = fast_start  # a one-shot process: models ready soonest, not fastest per question
        self._lock = threading.Lock()
        self._checked = 0.0
        self._state = self._load(None)

    @classmethod
    def open(cls, settings: Settings, fast_start: bool = False) -> KnowledgeBase:
        """Load the index; raises ``IndexUnavailable`` naming the fix. ``fast_start`` for a process
        that answers one question (``kbq ask``): encoders that need no warm-up."""
        return cls(settings, fast_start=fast_start)

    def _load(self, previous: _State | None) -> _State:
        names = embedder_names(self.settings.embed_model)
        store = open_store(
            self.settings, indexed_names(self.settings), reuse=previous.store if previous else None
        )
        check_roles(store.manifest, self.settings.index_dir, names)
        relevance = relevance_name(self.settings.relevance_model)
        if previous is not None:
            embedders, scorer = previous.retriever.embedders, previous.retriever.relevance  # loaded once
        else:
            cache = self.settings.model_cache_dir
            embedders = {name: load_embedder(name, cache, self._fast_start) for name in names}
            scorer = load_embedder(relevance, cache, self._fast_start) if relevance else None
        retriever = Retriever(store, embedders, self._weights, relevance=scorer)
        answerer = Answerer(retriever, self._calibration, self.settings.max_question_chars)
        return _State(store, retriever, answerer)

    @property
    def store(self) -> Store:
        return self._state.store

    @property
    def answerer(self) -> Answerer:
        return self._state.answerer

    @property
    def version(self) -> str:
        return self._state.store.version

    def reload_if_changed(self, min_interval: float = 0.0) -> bool:
        """Swap in a newer index version if ``kbq ingest`` wrote one; cheap when nothing changed."""
        now = time.monotonic()
        if now - self._checked < min_interval:
            return False
        self._checked = now
        latest = current_version(self.settings)
        if latest is None or latest == self._state.store.version:
            return False
        with self._lock:
            if current_version(self.settings) == self._state.store.version:
                return False
            self._state = self._load(self._state)
        return True

    def ask(
        self,
        question: str,
        kinds: Collection[str] | None = None,
        langs: Collection[str] | None = None,
        lang: str | None = None,
    ) -> Answer:
        """Answer ``question`` in ``lang`` ('en' or 'zh'; by default the question's own language)."""
        return self._state.answerer.answer(question, kinds=kinds, langs=langs, lang=lang)

    def search(
        self,
        query: str,
        k: int = 10,
        kinds: Collection[str] | None = None,
        langs: Collection[str] | None = None,
    ) -> list[Hit]:
        return self._state.retriever.search(
            check_question(query, self.settings.max_question_chars), k=k, kinds=kinds, langs=langs
        )

    def documents(self) -> list[Document]:
        store = self._state.store
        return [d for d in (store.document(i) for i in store.document_ids()) if d is not None]

    def document(self, doc_id: str) -> Document | None:
        return self._state.store.document(doc_id)

    def chunk_count(self, doc_id: str) -> int:
        return len(self._state.store.document_rows(doc_id))

    def counts(self) -> tuple[int, int]:
        """(documents, chunks) of the version being served."""
        counts = self._state.store.manifest["counts"]
        return int(counts["documents"]), int(counts["chunks"])

    def stats(self) -> dict[str, object]:
        store = self._state.store
        counts = store.manifest["counts"]
        return {
            "version": store.version,
            "documents": counts["documents"],
            "chunks": counts["chunks"],
            "embedders": [e["id"] for e in store.manifest["embedders"]],
            "confidence": self._state.answerer.calibration.serving,  # kb.calibration.Calibration.for_corpus
            "store": self.settings.store,
            "path": str(Path(self.settings.index_dir))
            if self.settings.store == "local"
            else self.settings.milvus_uri,
        }
