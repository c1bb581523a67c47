"""GET /widget.js, the embeddable chat widget, and POST /v1/widget/token, which the wiki's server calls."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, Field

from kb.config import Settings
from service.deps import SettingsDep, StateDep, get_caller
from service.errors import ApiError
from service.widget.tokens import TokenError

STATIC = Path(__file__).resolve().parents[1] / "static"
CSS_SLOT = '/*kbq:css*/""'  # widget.js falls back to linking widget.css when this is left as it is
CONFIG_SLOT = "/*kbq:config*/{}"  # the service's settings the widget follows (the question length limit)
STRINGS_SLOT = "/*kbq:strings*/{}"  # the interface's words in each language, from widget.strings.json

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


def widget_script(settings: Settings) -> str:
    """widget.js with its stylesheet, its strings and the service's limits inlined: one request brings the
    whole widget."""
    script = (STATIC / "widget.js").read_text(encoding="utf-8")
    css = (STATIC / "widget.css").read_text(encoding="utf-8")
    strings = json.loads((STATIC / "widget.strings.json").read_text(encoding="utf-8"))
    config = {"maxQuestionChars": settings.max_question_chars}
    for slot, value in ((CSS_SLOT, css), (STRINGS_SLOT, strings), (CONFIG_SLOT, config)):
        script = script.replace(slot, json.dumps(value, ensure_ascii=False), 1)
    return script


@router.get("/widget.js", include_in_schema=False)
def widget_js(settings: SettingsDep) -> Response:
    return Response(
        widget_script(settings),
        media_type="text/javascript; charset=utf-8",
        headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"},
    )


@router.post(
    "/v1/widget/token",
    response_model=WidgetTokenOut,
    summary="A short-lived token for the wiki widget (call it from the wiki's server, with an API key)",
)
def widget_token(
    body: WidgetTokenRequest, state: StateDep, _caller: Annotated[str, Depends(get_caller)]
) -> dict:
    tokens = state.tokens
    try:
        token = tokens.issue(body.origin)
    except TokenError as exc:
        raise ApiError(403, "origin_not_allowed", str(exc)) from None
    return {"token": token, "expires_in": tokens.ttl, "origin": tokens.verify(token, None)}
