"""`kbq serve --workers 2`, a real multi-process server on 127.0.0.1: widget tokens minted by one worker verify
in the other, and a key's rate limit is one limit across workers."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from kb.config import Settings
from tests.conftest import ROOT

pytestmark = pytest.mark.e2e
MINT, LIMITED, ORIGIN, LIMIT = "mint-key", "limited-key", "http://wiki.test", 5
DOC = "faq/c5-migration.en"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def two_workers(private_settings: Settings) -> Iterator[tuple[str, Settings]]:
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("KB_", "KBQ_", "SLACK_"))},
        "KB_INDEX_DIR": str(private_settings.index_dir),
        "KB_CORPUS_DIR": str(private_settings.corpus_dir),
        "KB_API_KEYS": f"{MINT},{LIMITED}",
        "KB_CORS_ORIGINS": ORIGIN,
        "KB_RATE_LIMIT": str(LIMIT),
        "KB_PUBLIC_ENDPOINTS": "metrics",  # open endpoints are not rate limited
    }  # no KB_WIDGET_SECRET: `kbq serve` must give both workers one
    cmd = [sys.executable, "-m", "service.cli", "serve", "--port", str(port), "--workers", "2"]
    # its log goes to a file, not a pipe nobody reads while it runs (a full pipe blocks the writer), and is
    # shown when the server fails to start or to stop; its own session, so every worker can be killed
    log_path = private_settings.index_dir.parent / "serve.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, f"kbq serve exited: {log_path.read_text()[-4000:]}"
            assert time.monotonic() < deadline, "kbq serve --workers 2 did not start"
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        yield url, private_settings
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # no worker left behind
            proc.wait()
            pytest.fail(
                f"kbq serve --workers 2 ran on 30 s after SIGTERM; its log ends:\n{log_path.read_text()[-4000:]}"
            )


def _fresh(url: str, address: str = "127.0.0.1") -> httpx.Client:
    """A client on a new connection (from ``address``): the kernel hands new connections to either worker."""
    return httpx.Client(base_url=url, transport=httpx.HTTPTransport(local_address=address), timeout=30)


def _served_by_two_workers(url: str) -> bool:
    """Each worker counts its own requests (after answering): with one worker the 20 fetches of /metrics
    would read 0, 1, …, 19; two workers share them out, so no count reaches 19."""
    seen = []
    for _ in range(20):
        with _fresh(url) as http:
            text = http.get("/metrics").text
        count = re.search(
            r'kbq_http_requests_total\{route="/metrics",method="GET",status="200"\} (\S+)', text
        )
        seen.append(int(float(count.group(1))) if count else 0)
    return max(seen) < len(seen) - 1


def test_tokens_and_rate_limits_are_shared_by_the_workers(two_workers: tuple[str, Settings]) -> None:
    url, settings = two_workers
    assert _served_by_two_workers(url)
    # tokens: minted on fresh connections, each checked on fresh connections from other addresses
    tokens = set()
    for i in range(2):
        with _fresh(url, f"127.0.1.{i + 1}") as http:
            minted = http.post(
                "/v1/widget/token", json={"origin": ORIGIN}, headers={"Authorization": f"Bearer {MINT}"}
            )
            assert minted.status_code == 200, minted.text
            tokens.add(minted.json()["token"])
            time.sleep(1.01)  # tokens minted in the same second are the same token
    for t, token in enumerate(sorted(tokens)):
        for i in range(4):
            with _fresh(url, f"127.0.{t + 2}.{i + 1}") as http:
                assert http.get(f"/docs/{DOC}", params={"t": token}).status_code == 200
    # one key, LIMIT requests a minute, however the connections are spread over the workers
    statuses = []
    for _ in range(3 * LIMIT):
        with _fresh(url, "127.0.9.9") as http:
            statuses.append(
                http.get("/v1/documents", headers={"Authorization": f"Bearer {LIMITED}"}).status_code
            )
    assert statuses.count(200) == LIMIT and statuses.count(429) == 2 * LIMIT, statuses
    assert (settings.index_dir.parent / "ratelimit.sqlite3").exists()  # the workers' shared table
