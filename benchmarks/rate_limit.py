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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from service.ratelimit import RateLimiter

from benchmarks.http_latency import free_port, prepare_index

FLOOD = 30_000
REGULAR_CALLERS = 50
CONCURRENCY = 16
OPEN = 10**9  # requests/minute: nobody is limited, so every run does the same work per request


def unique_address(i: int) -> str:
    """The i-th loopback address from 127.1.0.1 on; never 127.0.0.1, which the regular callers use."""
    i += 65_536 + 1
    return f"127.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


def _rss_mib(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _limiter_run(limiter: RateLimiter, callers: list[str], n: int) -> float:
    started = time.perf_counter()
    for i in range(n):
        limiter.take(callers[i % len(callers)])
    return n / (time.perf_counter() - started)


def limiter_table(workdir: Path) -> list[str]:
    rows = [
        "| store | workload | requests | req/s | vs normal | callers held | bound | RSS growth |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    regular = [f"ip:127.0.0.{i + 1}" for i in range(REGULAR_CALLERS)]
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
            callers = [f"ip:{unique_address(start + i)}" for i in range(n)]
            rate = _limiter_run(flood, callers, n)
            rows.append(
                f"| {store} | {label} | {n:,} | {rate:,.0f} | {rate / base:.2f} | {flood.size():,} | "
                f"{flood.max_callers:,} | {_rss_mib() - rss:+.1f} MiB |"
            )
            del callers
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


def http_table(index_dir: Path) -> list[str]:
    rows = [
        "| server | workload | requests | req/s | vs normal | statuses | server RSS before → after | "
        "limiter rows |",
        "|---|---|---:|---:|---:|---|---|---:|",
    ]
    regular = [(f"127.0.0.{i % REGULAR_CALLERS + 1}", "") for i in range(FLOOD)]
    unique = [(unique_address(i), "") for i in range(FLOOD)]
    for workers in (1, 2):
        with kbq_serve(index_dir, workers, OPEN) as (port, proc):
            asyncio.run(_flood(port, regular[:500]))  # warm up every worker
            results = []
            for label, sources in (
                (f"{REGULAR_CALLERS} regular addresses", regular),
                ("unique addresses", unique),
            ):
                before = _server_rss(proc)
                rate, statuses = asyncio.run(_flood(port, sources))
                results.append((label, rate, statuses, before, _server_rss(proc)))
            db = index_dir.parent / "ratelimit.sqlite3"
            held = "in memory"
            if workers > 1 and db.exists():
                with sqlite3.connect(db) as conn:
                    held = f"{conn.execute('SELECT count(*) FROM buckets WHERE caller != 0').fetchone()[0]:,}"
            base = results[0][1]
            for label, rate, statuses, before, after in results:
                shown = ", ".join(f"{n:,}×{s}" for s, n in sorted(statuses.items()))
                rows.append(
                    f"| {workers} worker{'s' if workers > 1 else ''} | {label} | {FLOOD:,} | {rate:,.0f} | "
                    f"{rate / base:.2f} | {shown} | {before:.0f} → {after:.0f} MiB | {held} |"
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
    args = parser.parse_args()
    resource.setrlimit(resource.RLIMIT_NOFILE, (4096, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    with tempfile.TemporaryDirectory(prefix="kbq-bench-rl-") as tmp:
        workdir = Path(tmp)
        print("\n".join(limiter_table(workdir)), flush=True)
        if not args.no_http:
            settings = prepare_index(workdir)
            print()
            print("\n".join(http_table(settings.index_dir)))


if __name__ == "__main__":
    main()
