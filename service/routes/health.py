"""Open endpoints: /healthz, /metrics and the small home page."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Response
from fastapi.responses import FileResponse

from service.deps import KnowledgeDep, MetricsDep
from service.models import HealthOut

router = APIRouter()
STATIC = Path(__file__).resolve().parents[1] / "static"
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}


@router.get("/healthz", response_model=HealthOut, summary="Liveness, with the index being served")
def healthz(kb: KnowledgeDep) -> dict:
    stats = kb.stats()
    return {
        "status": "ok",
        "version": stats["version"],
        "documents": stats["documents"],
        "chunks": stats["chunks"],
    }


@router.get(
    "/metrics",
    response_class=Response,
    summary="Prometheus metrics",
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
def metrics(kb: KnowledgeDep, registry: MetricsDep) -> Response:
    registry.index(len(kb.index.documents), len(kb.index.chunks))
    return Response(registry.render(), media_type=registry.content_type)


@router.get("/", response_class=FileResponse, include_in_schema=False)
def home() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)
