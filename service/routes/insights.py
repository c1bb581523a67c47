"""GET /admin/insights (the page), .json and .csv: the answer log for its maintainers, behind admin keys.

Admin keys (KB_ADMIN_KEYS) are not API keys: an API key is refused (403), so is a caller without a key
(401, with a Basic challenge so a browser asks for one: any user name, the admin key as password). Scripts
may send ``Authorization: Bearer <admin key>``. With no admin keys configured the pages are off.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from service.deps import KnowledgeDep, SettingsDep
from service.errors import ApiError
from service.insights.export import TABLES, to_csv
from service.insights.page import HEADERS, render_page
from service.insights.report import Insights, insights_for
from service.security import key_id, retry_after, valid_key
from service.state import app_state

router = APIRouter(prefix="/admin", include_in_schema=False)
CHALLENGE = {"WWW-Authenticate": 'Basic realm="kbq admin", charset="UTF-8"'}
Days = Annotated[int, Query(ge=1, le=3660, description="The last N days, today included (UTC).")]


def presented_key(authorization: str) -> str | None:
    """The key of ``Bearer <key>``, or the password of ``Basic base64(user:password)``."""
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


def admin_caller(request: Request) -> str:
    """Let an admin key through (returning its id); refuse API keys (403) and everyone else (401)."""
    state = app_state(request.app)
    host = request.client.host if request.client else "unknown"
    wait = state.limiter.take(f"admin:{host}")
    if wait:
        raise ApiError(429, "rate_limited", f"too many requests; try again in {retry_after(wait)} s")
    api_keys = state.settings.api_keys
    admin_keys = tuple(
        k for k in state.settings.admin_keys if k not in api_keys
    )  # an API key never opens them
    if not admin_keys:
        raise ApiError(403, "forbidden", "the admin pages are off: set KB_ADMIN_KEYS to turn them on")
    key = presented_key(request.headers.get("authorization", ""))
    if key and valid_key(key, admin_keys):
        return key_id(key)
    if key and valid_key(key, api_keys):
        raise ApiError(403, "forbidden", "an API key does not open the admin pages; use an admin key")
    raise ApiError(401, "unauthorized", "an admin key (KB_ADMIN_KEYS) is required", CHALLENGE)


Admin = Annotated[str, Depends(admin_caller)]


def _insights(settings: SettingsDep, kb: KnowledgeDep, days: Days = 30) -> Insights:
    return insights_for(settings, kb, days)


InsightsDep = Annotated[Insights, Depends(_insights)]


@router.get("/insights", response_class=HTMLResponse)
def page(_: Admin, insights: InsightsDep, request: Request) -> HTMLResponse:
    return HTMLResponse(render_page(insights, request.scope.get("root_path", "")), headers=HEADERS)


@router.get("/insights.json")
def as_json(_: Admin, insights: InsightsDep) -> JSONResponse:
    return JSONResponse(insights.to_dict(), headers={"Cache-Control": "private, no-store"})


@router.get("/insights.csv")
def as_csv(_: Admin, insights: InsightsDep, table: Annotated[str, Query()] = "gaps") -> Response:
    if table not in TABLES:
        raise ApiError(422, "invalid_request", f"table must be one of {', '.join(TABLES)}")
    p = insights.period
    name = f"kbq-insights-{table}-{p.since}-{p.until}.csv"
    headers = {"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "private, no-store"}
    return Response(to_csv(insights, table), media_type="text/csv; charset=utf-8", headers=headers)
