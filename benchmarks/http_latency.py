"""HTTP latency and throughput of POST /v1/ask against the in-process ``kb.ask`` call, at concurrency 1, 8
and 32, with one server worker and with one per CPU core.

    python -m benchmarks.http_latency            # temp index built from corpus/
    KB_INDEX_DIR=.kbq/index python -m benchmarks.http_latency
    python -m benchmarks.http_latency --workers 1 2 4

The server is a real ``kbq serve --workers N`` on 127.0.0.1 serving a temporary copy of the index (so the
answer log it writes never lands beside a real index). Only loopback traffic; the load generator runs on
the same two cores as the server, so it takes a share of them. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np

from kb.config import Settings
from kb.knowledge import KnowledgeBase
from kb.local_store import copy_published

QUESTIONS = [
    "Which regions had C5 at launch?",
    "Why did AWS move from Xen to KVM?",
    "What is the Nitro hypervisor?",
    "Why is the root device /dev/nvme0n1 on C5?",
    "What does ENA is required for the c5.large instance type mean?",
    "Is AWS abandoning Xen?",
    "What is the capital of France?",
    "换到 C5 后根盘为什么变成 /dev/nvme0n1?",
    "AWS 为什么从 Xen 换到 KVM?",
    "C5 刚发布时在哪些区域可用?",
]
REQUESTS = 200
CONCURRENCY = (1, 8, 32)
WARMUP = 30


def prepare_index(workdir: Path) -> Settings:
    """A private copy of KB_INDEX_DIR, or a fresh build from KB_CORPUS_DIR / corpus/."""
    env = Settings.from_env()
    target = workdir / "index"
    source = os.environ.get("KB_INDEX_DIR")
    if source and (Path(source) / "manifest.json").exists():
        copy_published(Path(source), target)
        return replace(env, index_dir=target)
    from service.indexing import ingest

    settings = replace(env, index_dir=target)
    print(f"building a temporary index from {settings.corpus_dir} …", file=sys.stderr)
    ingest(settings)
    return settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def server(settings: Settings, workers: int) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "KB_INDEX_DIR": str(settings.index_dir),
        "KB_EMBED_MODEL": settings.embed_model,
        "KB_RELEVANCE_MODEL": settings.relevance_model,
        "KB_RATE_LIMIT": str(10**9),
        "KB_API_KEYS": "",
    }
    cmd = [sys.executable, "-m", "service.cli", "serve", "--port", str(port), "--workers", str(workers)]
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(cmd, env=env, stderr=log)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while not _serving(url, workers):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the kbq server did not start")
                time.sleep(0.2)
            yield url
        except BaseException:
            log.seek(0)
            print(f"kbq serve's log:\n{log.read()[-4000:]}", file=sys.stderr)
            raise
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def _serving(url: str, workers: int) -> bool:
    """Up, and with several workers, more than one answering: each counts its own requests in /metrics, so
    a counter below the number of requests made shows another worker took some (new connections each)."""
    seen = []
    try:
        for _ in range(20):
            if httpx.get(f"{url}/healthz", timeout=2).status_code != 200:
                return False
            if workers == 1:
                return True
            found = re.search(
                r'route="/metrics",status="200"} (\S+)', httpx.get(f"{url}/metrics", timeout=2).text
            )
            seen.append(int(float(found.group(1))) if found else 0)
            if len(seen) > 2 and max(seen) < len(seen):
                return True
    except httpx.TransportError:
        pass
    return False


async def http_load(
    url: str, concurrency: int, total: int, path: str = "/v1/ask", caller: str = "bench"
) -> tuple[list[float], float]:
    """``total`` requests from ``concurrency`` workers; returns per-request seconds and wall-clock seconds."""
    latencies: list[float] = []
    counter = iter(range(total))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:

        async def request(i: int) -> httpx.Response:
            if path != "/v1/ask":
                return await client.get(path)
            body = {"question": QUESTIONS[i % len(QUESTIONS)], "client": caller}
            return await client.post(path, json=body)

        async def worker() -> None:
            for i in counter:
                started = time.perf_counter()
                (await request(i)).raise_for_status()
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return latencies, time.perf_counter() - started


def in_process(settings: Settings, total: int) -> tuple[list[float], float]:
    kb = KnowledgeBase.open(settings)
    for question in QUESTIONS * 3:
        kb.ask(question)
    latencies = []
    started = time.perf_counter()
    for i in range(total):
        t = time.perf_counter()
        kb.ask(QUESTIONS[i % len(QUESTIONS)])
        latencies.append(time.perf_counter() - t)
    return latencies, time.perf_counter() - started


def server_side_ms(settings: Settings, client: str) -> float:
    """p50 of kb.ask as timed inside the server, read from the answer log it wrote."""
    with closing(sqlite3.connect(settings.feedback_db)) as db:
        rows = db.execute("SELECT latency_ms FROM answers WHERE client = ?", (client,))
        return float(np.percentile([r[0] for r in rows], 50))


Row = tuple[str, int, float, float, float, float | None]


def row(name: str, concurrency: int, run: tuple[list[float], float], inside: float | None = None) -> Row:
    latencies, wall = run
    ms = np.array(latencies) * 1000
    p50, p99 = (float(x) for x in np.percentile(ms, [50, 99]))
    return name, concurrency, p50, p99, len(ms) / wall, inside


def measure(settings: Settings, workers: list[int]) -> list[Row]:
    # in-process runs before and after the servers', so neither side alone pays for a busy moment
    rows = [row("in-process kb.ask (before)", 1, in_process(settings, REQUESTS))]
    for n in workers:
        with server(settings, n) as url:
            asyncio.run(http_load(url, 4, WARMUP))
            label = f"{n} worker{'s' if n > 1 else ''}"
            rows.append(
                row(f"HTTP GET /healthz, {label}", 1, asyncio.run(http_load(url, 1, REQUESTS, "/healthz")))
            )
            for c in CONCURRENCY:
                client = f"bench-w{n}-c{c}"
                rows.append(
                    row(
                        f"HTTP POST /v1/ask, {label}",
                        c,
                        asyncio.run(http_load(url, c, REQUESTS, caller=client)),
                        server_side_ms(settings, client),
                    )
                )
    rows.append(row("in-process kb.ask (after)", 1, in_process(settings, REQUESTS)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    cores = os.cpu_count() or 1
    parser.add_argument("--workers", type=int, nargs="+", default=sorted({1, cores}), help="server workers")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="kbq-bench-") as tmp:
        rows = measure(prepare_index(Path(tmp)), args.workers)
    base = min(r[2] for r in rows if r[0].startswith("in-process"))  # the faster one: no flattering ratios
    print(
        f"{REQUESTS} requests per row, {len(QUESTIONS)} questions (en + zh, one unanswerable), `kbq serve` on "
        f"127.0.0.1; {cores} CPUs, 1-min load average {load_before:.1f} before and "
        f"{os.getloadavg()[0]:.1f} after\n"
    )
    print(
        "| path | concurrency | p50 ms | p99 ms | throughput req/s | p50 vs in-process p50 | kb.ask p50 ms in server |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, c, p50, p99, rps, inside in rows:
        cell = f"{inside:.2f}" if inside is not None else ""
        print(f"| {name} | {c} | {p50:.2f} | {p99:.2f} | {rps:.0f} | {p50 / base:.2f}× | {cell} |")


if __name__ == "__main__":
    main()
