"""GET /widget.js, the embeddable chat widget, and POST /v1/widget/token, which the wiki's server calls."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from service.deps import get_caller
from service.errors import ApiError
from service.widget.tokens import TokenError, WidgetTokens

STATIC = Path(__file__).resolve().parents[1] / "static"
CSS_SLOT = '/*kbq:css*/""'  # widget.js falls back to linking widget.css when this is left as it is

router = APIRouter()


class WidgetTokenRequest(BaseModel):
    origin: str = Field(
        max_length=300,
        description="The origin of the wiki page that embeds the widget; must be listed in KB_CORS_ORIGINS.",
        examples=["https://wiki.example.com"],
    )


class WidgetTokenOut(BaseModel):
    token: str = Field(description="Give it to the widget as `data-kbq-token`; it is not a secret.")
    expires_in: int = Field(description="Seconds until the token expires.")
    origin: str


def widget_script() -> str:
    """widget.js with widget.css inlined, so one request brings the whole widget."""
    script = (STATIC / "widget.js").read_text(encoding="utf-8")
    css = (STATIC / "widget.css").read_text(encoding="utf-8")
    return script.replace(CSS_SLOT, json.dumps(css), 1)


@router.get("/widget.js", include_in_schema=False)
def widget_js() -> Response:
    return Response(
        widget_script(),
        media_type="text/javascript; charset=utf-8",
        headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"},
    )


@router.post(
    "/v1/widget/token",
    response_model=WidgetTokenOut,
    summary="A short-lived token for the wiki widget (call it from the wiki's server, with an API key)",
)
def widget_token(
    body: WidgetTokenRequest, request: Request, _caller: Annotated[str, Depends(get_caller)]
) -> dict:
    tokens: WidgetTokens = request.app.state.widget_tokens
    try:
        token = tokens.issue(body.origin)
    except TokenError as exc:
        raise ApiError(403, "origin_not_allowed", str(exc)) from None
    return {"token": token, "expires_in": tokens.ttl, "origin": tokens.verify(token, None)}
