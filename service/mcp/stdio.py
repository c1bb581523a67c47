"""`kbq mcp`: the MCP server over stdin/stdout, for a desktop assistant that starts it as a subprocess."""

from __future__ import annotations

from kb.config import Settings
from kb.knowledge import KnowledgeBase
from service.mcp.tools import build_server
from service.state import AppState


def run_stdio(settings: Settings, kb: KnowledgeBase) -> None:
    """Serve until the client closes stdin; answers are logged like the service's. Nothing but protocol
    messages may go to stdout."""
    state = AppState.build(settings, kb)
    state.open()
    try:
        build_server(state).run("stdio")
    finally:
        state.close()
