"""/healthz (always open) and /metrics. (The home page, a demo wiki, is in wiki.py.)"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from service.deps import KnowledgeDep, MetricsDep, open_or_keyed
from service.models import HealthOut

router = APIRouter()


@router.get("/healthz", response_model=HealthOut, summary="Liveness, with the index being served")
def healthz(kb: KnowledgeDep) -> dict:
    stats = kb.stats()
    return {
        "status": "ok",
        "version": stats["version"],
        "documents": stats["documents"],
        "chunks": stats["chunks"],
        "confidence": stats["confidence"],
    }


@router.get(
    "/metrics",
    response_class=Response,
    summary="Prometheus metrics (with API keys set, a key too, unless KB_PUBLIC_ENDPOINTS lists metrics)",
    dependencies=[Depends(open_or_keyed("metrics"))],
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
def metrics(kb: KnowledgeDep, registry: MetricsDep) -> Response:
    registry.index(*kb.counts())
    return Response(registry.render(), media_type=registry.content_type)
