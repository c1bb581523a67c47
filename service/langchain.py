"""LangChain adapter: the kbq index as a langchain-core ``BaseRetriever``.

kb/ owns no LangChain types; this edge converts hits into LangChain ``Document``s whose metadata
carries everything needed to cite them exactly (doc id, character span, title, section, url).
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document as LCDocument
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from kb.types import Hit


class KbqRetriever(BaseRetriever):
    """Hybrid kbq retrieval; ``kb`` is a ``kb.knowledge.KnowledgeBase``."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    kb: Any
    k: int = 5
    sources: list[str] | None = None
    langs: list[str] | None = None

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[LCDocument]:
        hits = self.kb.search(query, k=self.k, kinds=self.sources, langs=self.langs)
        return [self._to_document(hit) for hit in hits]

    def _to_document(self, hit: Hit) -> LCDocument:
        chunk = hit.chunk
        doc = self.kb.document(chunk.doc_id)
        return LCDocument(
            page_content=chunk.text,
            id=chunk.chunk_id,
            metadata={
                "chunk_id": chunk.chunk_id,
                "doc_id": chunk.doc_id,
                "source": chunk.kind,
                "title": doc.title if doc else "",
                "section": chunk.section,
                "lang": chunk.lang,
                "url": chunk.origin.url or (doc.url if doc else None),
                "date": chunk.origin.date or (doc.date if doc else None),
                "start": chunk.start,
                "end": chunk.end,
                "score": hit.score,
                "rank": hit.rank,
            },
        )
