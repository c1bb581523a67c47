"""POST /v1/feedback: a reader's vote on one answer."""

from __future__ import annotations

from fastapi import APIRouter, Response

from service.deps import StoreDep
from service.errors import not_found
from service.models import FeedbackRequest

router = APIRouter(prefix="/v1")


@router.post("/feedback", status_code=204, response_class=Response, summary="Vote on an answer")
def feedback(body: FeedbackRequest, store: StoreDep) -> Response:
    if not store.add_feedback(body.answer_id, body.helpful, body.comment):
        raise not_found(f"answer {body.answer_id!r}")
    return Response(status_code=204)
