"""The MCP streamable HTTP transport at ``/mcp``, behind the same API keys and rate limit as ``/v1``.

``mcp_router(settings)`` is an ``APIRouter`` carrying the route and a lifespan that builds the MCP server
over the app's knowledge base and answer log and runs the SDK's session manager; FastAPI runs that
lifespan inside the app's own, so the index is loaded first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

from fastapi import APIRouter, FastAPI
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from kb.config import Settings
from service.auth import authorise
from service.deps import bearer
from service.errors import ApiError, error_response
from service.mcp.tools import build_server
from service.state import app_state

PATH = "/mcp"
LOCAL = ("127.0.0.1", "localhost", "[::1]")


def transport_security(settings: Settings) -> TransportSecuritySettings:
    """DNS-rebinding protection: the Host must be this machine or the public URL's host, and a browser's
    Origin this machine, the public URL or one of the CORS origins."""
    public = urlsplit(settings.public_url)
    hosts = [*LOCAL, *(f"{h}:*" for h in LOCAL), *(h for h in (public.hostname, public.netloc) if h)]
    local_origins = [f"http://{h}{port}" for h in LOCAL for port in ("", ":*")]
    origins = [*local_origins, f"{public.scheme}://{public.netloc}", *settings.cors_origins]
    return TransportSecuritySettings(allowed_hosts=hosts, allowed_origins=origins)


class McpEndpoint:
    """The ASGI app of the ``/mcp`` route: the API key check, then the SDK's session manager."""

    def __init__(self) -> None:
        self.manager: StreamableHTTPSessionManager | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            credentials = await bearer(request)
            authorise(app_state(request.app), request, credentials.credentials if credentials else None)
        except ApiError as refused:
            await error_response(refused.status, refused.code, refused.message, refused.headers)(
                scope, receive, send
            )
            return
        if self.manager is None:
            response = error_response(503, "index_unavailable", "the MCP endpoint is starting; try again")
            await response(scope, receive, send)
            return
        await self.manager.handle_request(scope, receive, send)


def mcp_router(settings: Settings) -> APIRouter:
    """The ``/mcp`` route and the lifespan that serves it; one per app (a session manager runs once)."""
    endpoint = McpEndpoint()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        server = build_server(app_state(app))
        # Builds the session manager; the Starlette app it returns is not used: the route below calls
        # the manager itself, after the API key check.
        server.streamable_http_app(streamable_http_path=PATH, transport_security=transport_security(settings))
        async with server.session_manager.run():
            endpoint.manager = server.session_manager
            try:
                yield
            finally:
                endpoint.manager = None

    router = APIRouter(lifespan=lifespan)
    router.routes.append(Route(PATH, endpoint=endpoint, include_in_schema=False))
    return router
