"""Where one ``kb.ask`` spends its time, stage by stage, printed as a Markdown table.

    python -m benchmarks.profile                  # the index at KB_INDEX_DIR (default .kbq/index)
    python -m benchmarks.profile --split all      # every golden question, not only the test split

Stages are timed by wrapping the functions that do them (nothing in kb/ knows it is being timed); each
stage's time is exclusive: a wrapped call inside another counts for the inner stage only. A stage's CPU time
is ``time.thread_time`` of the thread that runs it (the relevance model embeds the question on another
thread while retrieval runs, so its wall time overlaps the others'); the unwrapped figures below the table
are ``time.process_time`` (all threads). ``thread_time`` leaves out native worker threads (FAISS's OpenMP,
a multi-threaded onnxruntime), which the question path does not use. Wall time is ``time.perf_counter``;
"other" is what ``kb.ask`` spends outside every named stage. ``calls / ask`` counts the first function of each stage per
question: each question embedder must run once.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from evals.golden import load_golden
from kb import answer as answer_module
from kb.config import Settings
from kb.knowledge import KnowledgeBase

STAGES = (
    "question embedding: relevance (e5)",
    "question embedding: use",
    "question embedding: minilm",
    "dense search",
    "lexical (BM25)",
    "fusion + top-k",
    "sentence scoring",
    "composition",
    "verification",
)


class StageClock:
    """Exclusive wall and CPU time per stage, summed over the calls made while it is installed."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[list[float]] = []  # per open call on the main thread: [child wall, child cpu]
        self._lock = threading.Lock()

    def wrap(self, stage: str, fn: Callable[..., Any], counted: bool = True) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            if threading.current_thread() is not threading.main_thread():
                return self._background(stage, fn, *args, **kwargs)
            self._stack.append([0.0, 0.0])
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
                child_wall, child_cpu = self._stack.pop()
                self.wall[stage] += wall - child_wall
                self.cpu[stage] += cpu - child_cpu
                self.calls[stage] += counted
                if self._stack:
                    self._stack[-1][0] += wall
                    self._stack[-1][1] += cpu

        return timed

    def _background(self, stage: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """A stage run on another thread: its own times, outside the main thread's nesting."""
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            with self._lock:
                self.wall[stage] += time.perf_counter() - wall
                self.cpu[stage] += time.thread_time() - cpu
                self.calls[stage] += 1


def _hooks(kb: KnowledgeBase) -> list[tuple[str, object, str]]:
    """(stage, object, attribute) for every function a stage is made of; absent ones are skipped, so
    the same table can be taken of an older kb/ (the 'before' column)."""
    answerer = kb.answerer
    retriever = answerer.retriever
    hooks: list[tuple[str, object, str]] = []
    for model_id, embedder in retriever.embedders.items():
        name = "use" if "use" in model_id else "minilm" if "MiniLM" in model_id else model_id
        hooks.append((f"question embedding: {name}", embedder, "embed_queries"))
    if retriever.relevance is not None:
        hooks.append(("question embedding: relevance (e5)", retriever.relevance, "embed_queries"))
    hooks += [
        ("dense search", retriever, "signals"),  # what signals() does besides embedding and BM25
        ("dense search", kb.store, "dense_scores"),
        ("dense search", kb.store, "sentences"),
        ("lexical (BM25)", kb.store, "lexical_scores"),
        ("fusion + top-k", retriever, "search"),
        ("sentence scoring", answerer.featuriser, "candidates"),
        ("sentence scoring", answerer.calibration, "ranker"),
        ("composition", answerer, "choose"),
        ("composition", answerer, "finish"),  # what finish() does besides choosing and citing
        ("verification", answerer, "_citation"),
        ("verification", answer_module, "verify"),
    ]
    return [h for h in hooks if hasattr(h[1], h[2])]


@contextmanager
def installed(clock: StageClock, kb: KnowledgeBase) -> Iterator[None]:
    saved = []
    counted: set[str] = set()  # calls / ask counts the first function of each stage
    for stage, owner, attr in _hooks(kb):
        saved.append((owner, attr, owner.__dict__.get(attr, _MISSING)))
        object.__setattr__(owner, attr, clock.wrap(stage, getattr(owner, attr), stage not in counted))
        counted.add(stage)
    try:
        yield
    finally:
        for owner, attr, value in reversed(saved):
            if value is _MISSING:
                object.__delattr__(owner, attr)
            else:
                object.__setattr__(owner, attr, value)


_MISSING = object()


def warm_asks(kb: KnowledgeBase, questions: list[str]) -> tuple[list[float], list[float]]:
    """Per-question CPU ms (``time.process_time``: all threads) and wall ms of plain asks, after a warm-up."""
    for q in questions[:20]:
        kb.ask(q)  # warm-up: models loaded, caches filled
    cpu_ms, wall_ms = [], []
    for q in questions:
        wall, cpu = time.perf_counter(), time.process_time()
        kb.ask(q)
        cpu_ms.append((time.process_time() - cpu) * 1000)
        wall_ms.append((time.perf_counter() - wall) * 1000)
    return cpu_ms, wall_ms


def profile(
    kb: KnowledgeBase, questions: list[str], rounds: int
) -> tuple[StageClock, list[float], list[float]]:
    """Stage times over ``rounds`` passes, and per-question CPU / wall ms of plain (unwrapped) asks."""
    cpu_ms, wall_ms = warm_asks(kb, questions)
    clock = StageClock()
    with installed(clock, kb):
        ask = clock.wrap("other", kb.ask)
        for _ in range(rounds):
            for q in questions:
                ask(q)
    return clock, cpu_ms, wall_ms


def table(clock: StageClock, asks: int) -> list[tuple[str, float, float, float]]:
    """(stage, CPU ms per ask, wall ms per ask, calls per ask), in pipeline order, then other."""
    names = [s for s in STAGES if s in clock.calls] + [s for s in clock.calls if s not in STAGES]
    return [
        (s, clock.cpu[s] * 1000 / asks, clock.wall[s] * 1000 / asks, clock.calls[s] / asks) for s in names
    ]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--split", default="test", help="golden split to ask (tune, test or all)")
    parser.add_argument("--rounds", type=int, default=2, help="passes over the questions for the stage table")
    args = parser.parse_args()
    settings = Settings.from_env()
    kb = KnowledgeBase.open(settings)
    questions = [i.question for i in load_golden(split=None if args.split == "all" else args.split)]
    load = os.getloadavg()[0]
    clock, cpu_ms, wall_ms = profile(kb, questions, args.rounds)
    rows = table(clock, len(questions) * args.rounds)
    total_cpu = sum(r[1] for r in rows)
    print(
        f"{len(questions)} golden questions ({args.split}) × {args.rounds}, index {Path(settings.index_dir)} "
        f"({kb.counts()[1]} chunks, {kb.store.manifest['counts']['sentences']} sentences); {os.cpu_count()} CPUs, "
        f"1-min load {load:.1f} before, {os.getloadavg()[0]:.1f} after\n"
    )
    print("| stage | CPU ms / ask | share | wall ms / ask | calls / ask |\n|---|---:|---:|---:|---:|")
    for stage, cpu, wall, calls in rows:
        print(f"| {stage} | {cpu:.2f} | {cpu / total_cpu:.0%} | {wall:.2f} | {calls:.1f} |")
    print(f"| **kb.ask, stages summed** | **{total_cpu:.2f}** | 100% | {sum(r[2] for r in rows):.2f} | |")
    print(
        f"\nunwrapped kb.ask: CPU p50 {statistics.median(cpu_ms):.2f} ms, p95 {percentile(cpu_ms, 0.95):.2f} ms; "
        f"wall p50 {statistics.median(wall_ms):.2f} ms, p95 {percentile(wall_ms, 0.95):.2f} ms"
    )


if __name__ == "__main__":
    main()
