"""Plain-dict views of kb results shared by the CLI's --json and the HTTP API."""

from __future__ import annotations

from typing import Any

from kb.types import Hit


def hit_dict(hit: Hit) -> dict[str, Any]:
    c = hit.chunk
    return {
        "rank": hit.rank,
        "score": round(hit.score, 4),
        "dense": round(hit.dense, 4),
        "lexical": round(hit.lexical, 4),
        "scores": {k: round(v, 4) for k, v in hit.explain.items()},
        "chunk_id": c.chunk_id,
        "doc_id": c.doc_id,
        "source": c.kind,
        "lang": c.lang,
        "section": c.section,
        "text": c.text,
        "start": c.start,
        "end": c.end,
        "meta": c.to_dict()["origin"],  # the chunk's provenance (kb.types.Provenance)
    }
