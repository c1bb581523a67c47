"""`kbq ask --url`: send the question to a running kbq service."""

from __future__ import annotations

from collections.abc import Sequence

import click
import httpx


def ask_remote(
    url: str, api_key: str, question: str, kinds: Sequence[str], langs: Sequence[str], lang: str | None
) -> dict:
    """The service's answer object; ``api_key`` (KBQ_API_KEY) is sent when set."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    body = {"question": question, "sources": list(kinds) or None, "langs": list(langs) or None, "lang": lang}
    try:
        response = httpx.post(url.rstrip("/") + "/v1/ask", json=body, headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach kbq at {url}: {exc}") from None
    if response.status_code != 200:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:200]
        raise click.ClickException(f"kbq at {url} answered {response.status_code}: {message}")
    return response.json()
