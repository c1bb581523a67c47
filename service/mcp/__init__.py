"""kbq as a Model Context Protocol server: the same cited answers for AI assistants and IDE agents.

``tools`` builds the server (tools ask, search and read_document; documents as resources) over a
``Backend``; ``stdio`` runs it for `kbq mcp`; ``http`` mounts its streamable HTTP transport in the app at
``/mcp``, behind the API keys.
"""
