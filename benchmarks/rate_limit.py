"""The rate limiter under a flood of unique callers: memory stays bounded and throughput stays near normal.

    python -m benchmarks.rate_limit              # temp index built from corpus/ (or a copy of KB_INDEX_DIR)
    python -m benchmarks.rate_limit --no-http    # the limiter alone, in this process

1. The limiter alone (``service.ratelimit.RateLimiter``), in memory (one worker) and in its SQLite file
   (several workers): 30,000 requests from 50 regular callers against 30,000 requests from 30,000 unique
   callers, then 200,000 more unique callers to show the table never grows past its slots.
2. Over HTTP: `kbq serve` on 127.0.0.1 (1 worker, then 2), ``GET /v1/documents``; every flood request comes
   from its own source address (127.x.y.z; Linux routes all of 127/8 to loopback) on a new connection,
   and a last run sends 30,000 spoofed ``X-Forwarded-For`` values from one address. Only loopback traffic.

Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from functools import partial
from pathlib import Path

import httpx

from benchmarks.http_latency import free_port, prepare_index
from service.ratelimit import RateLimiter

FLOOD = 30_000
REGULAR_CALLERS = 50  # the limiter alone: callers that come back again and again
REGULAR_ADDRESSES = 1_000  # over HTTP: as many, a new TCP connection each time, would queue in TIME_WAIT
CONCURRENCY = 16
OPEN = 10**9  # requests/minute: nobody is limited, so every run does the same work per request


def unique_address(i: int) -> str:
    """The i-th loopback address from 127.1.0.1 on; never one of 127.0.*.*, which the regular callers use."""
    i += 65_536 + 1
    return f"127.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


def _unique_caller(start: int, i: int) -> str:
    return f"ip:{unique_address(start + i)}"


def regular_address(i: int) -> str:
    i = i % REGULAR_ADDRESSES + 1
    return f"127.0.{i >> 8}.{i & 255}"


def _rss_mib(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _limiter_run(limiter: RateLimiter, caller: Callable[[int], str], n: int) -> float:
    """Requests per second of ``n`` takes by ``caller(0)``, ``caller(1)``, …: the names are made a thousand at
    a time outside the timing, and dropped, so time and memory growth are the limiter's own."""
    spent = 0.0
    for batch in range(0, n, 1000):
        names = [caller(i) for i in range(batch, min(n, batch + 1000))]
        started = time.perf_counter()
        for name in names:
            limiter.take(name)
        spent += time.perf_counter() - started
    return n / spent


def limiter_table(workdir: Path) -> list[str]:
    rows = [
        "| store | workload | requests | req/s | vs normal | callers held | bound | RSS growth |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]

    def regular(i: int) -> str:
        return f"ip:127.0.0.{i % REGULAR_CALLERS + 1}"

    for store, path in (("memory (1 worker)", None), ("SQLite file (workers)", workdir / "rl.sqlite3")):
        normal = RateLimiter(OPEN, path=path)
        _limiter_run(normal, regular, 2_000)  # warm up
        base = _limiter_run(normal, regular, FLOOD)
        rows.append(
            f"| {store} | {REGULAR_CALLERS} regular callers | {FLOOD:,} | {base:,.0f} | 1.00 | "
            f"{normal.size():,} | {normal.max_callers:,} | – |"
        )
        normal.close()
        if path is not None:
            path.unlink()
        flood = RateLimiter(60, path=path)
        rss = _rss_mib()
        for label, start, n in (("unique addresses", 0, FLOOD), ("200,000 more unique", FLOOD, 200_000)):
            rate = _limiter_run(flood, partial(_unique_caller, start), n)
            rows.append(
                f"| {store} | {label} | {n:,} | {rate:,.0f} | {rate / base:.2f} | {flood.size():,} | "
                f"{flood.max_callers:,} | {_rss_mib() - rss:+.1f} MiB |"
            )
        flood.close()
    return rows


async def _get(address: str, port: int, path: str, headers: str = "") -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(address, 0))
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{headers}\r\n".encode())
        await writer.drain()
        status = int((await reader.readline()).split()[1])
        while await reader.read(65_536):
            pass
        return status
    finally:
        writer.close()


async def _flood(port: int, sources: list[tuple[str, str]]) -> tuple[float, dict[int, int]]:
    statuses: dict[int, int] = {}
    queue = iter(sources)

    async def worker() -> None:
        for address, headers in queue:
            status = await _get(address, port, "/v1/documents", headers)
            statuses[status] = statuses.get(status, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return len(sources) / (time.perf_counter() - started), statuses


@contextmanager
def kbq_serve(index_dir: Path, workers: int, limit: int) -> Iterator[tuple[int, subprocess.Popen]]:
    port = free_port()
    env = {**os.environ, "KB_INDEX_DIR": str(index_dir), "KB_RATE_LIMIT": str(limit), "KB_API_KEYS": ""}
    for name in ("KB_TRUSTED_PROXIES", "KB_WORKERS"):
        env.pop(name, None)
    cmd = [sys.executable, "-m", "service.cli", "serve", "--port", str(port), "--workers", str(workers)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("kbq serve did not start")
            time.sleep(0.3)
        yield port, proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _server_rss(proc: subprocess.Popen) -> float:
    """RSS of the server and its worker processes together."""
    pids = [str(proc.pid)]
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    if children.exists():
        pids += children.read_text().split()
    return sum(_rss_mib(pid) for pid in pids)


def _rows(index_dir: Path, workers: int) -> str:
    """Callers the shared table holds (one worker's table is in its memory)."""
    db = index_dir.parent / "ratelimit.sqlite3"
    if workers == 1 or not db.exists():
        return "in memory"
    with closing(sqlite3.connect(db)) as conn:
        return f"{conn.execute('SELECT count(*) FROM buckets WHERE caller != 0').fetchone()[0]:,}"


def http_table(index_dir: Path) -> list[str]:
    rows = [
        "| server | workload | requests | req/s | vs normal | statuses | server RSS before → after | "
        "limiter rows |",
        "|---|---|---:|---:|---:|---|---|---:|",
    ]
    regular = [(regular_address(i), "") for i in range(FLOOD)]
    unique = [(unique_address(i), "") for i in range(FLOOD)]
    for workers in (1, 2):
        with kbq_serve(index_dir, workers, OPEN) as (port, proc):
            asyncio.run(_flood(port, regular[:2_000]))  # warm up every worker
            runs = []
            for label, sources in (
                (f"{REGULAR_ADDRESSES:,} regular addresses", regular),
                ("unique addresses", unique),
            ):
                before = _server_rss(proc)
                rate, statuses = asyncio.run(_flood(port, sources))
                runs.append((label, rate, statuses, before, _server_rss(proc), _rows(index_dir, workers)))
            for label, rate, statuses, before, after, held in runs:
                shown = ", ".join(f"{n:,}×{s}" for s, n in sorted(statuses.items()))
                rows.append(
                    f"| {workers} worker{'s' if workers > 1 else ''} | {label} | {FLOOD:,} | {rate:,.0f} | "
                    f"{rate / runs[0][1]:.2f} | {shown} | {before:.0f} → {after:.0f} MiB | {held} |"
                )
    with kbq_serve(index_dir, 1, 60) as (port, _):
        spoofed = [("127.0.0.1", f"X-Forwarded-For: {unique_address(i)}\r\n") for i in range(FLOOD)]
        rate, statuses = asyncio.run(_flood(port, spoofed))
        shown = ", ".join(f"{n:,}×{s}" for s, n in sorted(statuses.items()))
        rows.append(
            f"| 1 worker, KB_RATE_LIMIT=60 | one address, unique X-Forwarded-For | {FLOOD:,} | {rate:,.0f} | – "
            f"| {shown} | – | – |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-http", action="store_true", help="only the limiter, in this process")
    parser.add_argument("--only-http", action="store_true", help="only the HTTP runs")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(4096, hard)), hard))
    with tempfile.TemporaryDirectory(prefix="kbq-bench-rl-") as tmp:
        workdir = Path(tmp)
        if not args.only_http:
            print("\n".join(limiter_table(workdir)), flush=True)
        if not args.no_http:
            settings = prepare_index(workdir)
            print()
            print("\n".join(http_table(settings.index_dir)))


if __name__ == "__main__":
    main()
