"""Warm in-process answer latency and ingest times, printed as Markdown tables.

    python -m benchmarks.warm

Builds a fresh index from corpus/ in a temporary folder (full ingest, with each model's chunks and
sentences per second), re-ingests the unchanged corpus (which must embed nothing), then answers the
golden test questions in one warm process. Each latency row sits beside a baseline measured in the same
process (a BM25-only search, no embedding), so the ratio stays meaningful on a shared, noisy machine.
Where the time of one ``kb.ask`` goes, stage by stage: ``python -m benchmarks.profile``.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from evals.golden import load_golden
from kb.config import Settings
from kb.knowledge import KnowledgeBase
from service.indexing import ingest

ROOT = Path(__file__).resolve().parents[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(index_dir=Path(tmp) / "index", corpus_dir=ROOT / "corpus")
        reports = []
        full = timed(lambda: reports.append(ingest(settings)[0]))
        again = timed(lambda: ingest(settings))
        kb = KnowledgeBase.open(settings)
        questions = [item.question for item in load_golden(split="test")]
        kb.ask(questions[0])  # warm-up
        store = kb.store
        ask_ms = [timed(lambda q=q: kb.ask(q)) for q in questions]
        search_ms = [timed(lambda q=q: kb.search(q, k=10)) for q in questions]
        bm25_ms = [timed(lambda q=q: store.lexical_scores(q, store.live_rows())) for q in questions]
    print("| ingest | ms |\n|---|---:|")
    print(f"| full ingest of corpus/ ({kb.counts()[1]} chunks) | {full:.0f} |")
    print(f"| re-ingest, unchanged corpus | {again:.0f} |")
    print(f"| ratio re-ingest / full | {again / full:.3f} |")
    print(
        "\n| embedding at ingest, per model | chunks | chunks/s | sentences | sentences/s | not embedded again |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for e in reports[0].embedding:
        print(
            f"| {e['model_id']} | {e['chunks']} | {e['chunks_per_s']} | {e['sentences']} | "
            f"{e['sentences_per_s']} | {e['reused']} |"
        )
    print(
        f"\n| warm, in process ({len(questions)} golden test questions) | p50 ms | p95 ms | p50 / BM25 p50 |"
    )
    print("|---|---:|---:|---:|")
    base = statistics.median(bm25_ms)
    for name, values in (
        ("kb.ask", ask_ms),
        ("kb.search (k=10)", search_ms),
        ("BM25 scores only (baseline)", bm25_ms),
    ):
        p50 = statistics.median(values)
        print(f"| {name} | {p50:.1f} | {percentile(values, 0.95):.1f} | {p50 / base:.1f}x |")


if __name__ == "__main__":
    main()
