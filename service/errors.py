"""Every error leaves the service as ``{"error": {"code", "message"}}``; domain errors map to HTTP here."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from kb.answer import InvalidQuestion
from kb.store import IndexUnavailable

log = logging.getLogger(__name__)

HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    500: "internal",
    503: "index_unavailable",
}


class ApiError(Exception):
    """An error with a stable code, raised by the service layer itself."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


ECHO_CHARS = 120  # the most of a caller's input an error message repeats back


def echo(text: str) -> str:
    """``text`` as an error message may repeat it: at most ECHO_CHARS characters of it."""
    return text if len(text) <= ECHO_CHARS else text[:ECHO_CHARS] + f"… ({len(text)} characters)"


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{echo(what)} was not found")


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def _where(loc: tuple | list) -> str:
    return ".".join(str(part) for part in loc if part != "body") or "body"


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.headers)


async def _validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [f"{_where(e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in exc.errors()[:5]]
    return error_response(422, "invalid_request", "; ".join(problems) or "invalid request")


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = HTTP_CODES.get(exc.status_code, "invalid_request" if exc.status_code < 500 else "internal")
    message = str(exc.detail)
    if exc.status_code in (404, 405) and message in ("Not Found", "Method Not Allowed"):
        message = f"{message.lower()}: {echo(request.method)} {echo(request.url.path)}"
    return error_response(exc.status_code, code, message, exc.headers)


async def _invalid_question(_: Request, exc: Exception) -> JSONResponse:
    return error_response(422, "invalid_request", str(exc))


async def _index_unavailable(_: Request, exc: Exception) -> JSONResponse:
    return error_response(503, "index_unavailable", str(exc))


async def _internal(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal", "internal error; the request was logged")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(InvalidQuestion, _invalid_question)
    app.add_exception_handler(IndexUnavailable, _index_unavailable)
    app.add_exception_handler(Exception, _internal)
