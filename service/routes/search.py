"""POST /v1/search: the passages retrieval ranks highest, with their scores."""

from __future__ import annotations

from fastapi import APIRouter

from service.deps import KnowledgeDep
from service.models import SearchOut, SearchRequest
from service.schemas import hit_dict

router = APIRouter(prefix="/v1")


@router.post("/search", response_model=SearchOut, summary="Rank passages for a query")
def search(body: SearchRequest, kb: KnowledgeDep) -> dict:
    hits = kb.search(body.query, k=body.k, kinds=body.sources or None, langs=body.langs or None)
    return {"hits": [hit_dict(hit) for hit in hits]}
