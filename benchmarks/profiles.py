"""Speed against answer quality for each set of models kbq can run with, measured in one run.

    python -m benchmarks.profiles

Each profile is a KB_EMBED_MODEL / KB_RELEVANCE_MODEL pair with its own fitted calibration
(kb/calibration.json). Per profile: a full ingest of corpus/ into a temporary folder, warm ``kb.ask`` CPU and
wall time and ``kb.search`` wall time over the golden test questions, ``POST /v1/ask`` throughput and p99
with one server worker per core, and the answer quality the same process measures on the test split beside
the 5-fold tune figures recorded when its calibration was fitted. The fast path's targets (issue 16) are a
column of the table, and each figure is marked with whether it meets its target, on this machine, now.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from benchmarks.http_latency import REQUESTS, WARMUP, http_load, row, server
from benchmarks.profile import warm_asks
from benchmarks.warm import ROOT, percentile, timed
from evals.golden import load_golden
from evals.runner import run, summarise
from kb.config import Settings
from kb.knowledge import KnowledgeBase
from service.indexing import ingest

PROFILES = {  # name -> (KB_EMBED_MODEL, KB_RELEVANCE_MODEL)
    "default: USE + MiniLM, e5 relevance": ("use+minilm", "e5"),
    "USE + MiniLM, no relevance model": ("use+minilm", "none"),
    "USE alone, no relevance model": ("use", "none"),
}
TARGETS = {  # issue 16: measure -> (target, True when higher is better)
    "kb.ask CPU p50 ms": (10.0, False),
    "kb.search p50 ms": (7.0, False),
    "req/s, c=8": (120.0, True),
    "p99 ms, c=8": (100.0, False),
    "req/s, c=32": (120.0, True),
    "p99 ms, c=32": (400.0, False),
    "full ingest s": (9.0, False),
}


@dataclass
class Measured:
    speed: dict[str, float]
    test: dict[str, float]
    tune_cv: dict[str, float]


def measure(embed: str, relevance: str, workdir: Path, questions: list[str]) -> Measured:
    settings = replace(
        Settings.from_env(),
        index_dir=workdir / "index",
        corpus_dir=ROOT / "corpus",
        embed_model=embed,
        relevance_model=relevance,
    )
    speed = {"full ingest s": timed(lambda: ingest(settings)) / 1000}
    kb = KnowledgeBase.open(settings)
    cpu_ms, wall_ms = warm_asks(kb, questions)
    search_ms = [timed(lambda q=q: kb.search(q, k=10)) for q in questions]
    speed |= {
        "kb.ask CPU p50 ms": statistics.median(cpu_ms),
        "kb.ask wall p50 ms": statistics.median(wall_ms),
        "kb.ask wall p95 ms": percentile(wall_ms, 0.95),
        "kb.search p50 ms": statistics.median(search_ms),
    }
    with server(settings, os.cpu_count() or 1) as url:
        asyncio.run(http_load(url, 4, WARMUP))
        for c in (8, 32):
            _, _, _, p99, rps, _ = row("", c, asyncio.run(http_load(url, c, REQUESTS)))
            speed |= {f"req/s, c={c}": rps, f"p99 ms, c={c}": p99}
    test = summarise(run(kb, load_golden(split="test")))
    return Measured(speed, test, dict(kb.answerer.calibration.provenance.get("cross_validated") or {}))


def main() -> None:
    questions = [item.question for item in load_golden(split="test")]
    load_before = os.getloadavg()[0]
    found = {}
    for name, (embed, relevance) in PROFILES.items():
        with tempfile.TemporaryDirectory(prefix="kbq-profile-") as tmp:
            found[name] = measure(embed, relevance, Path(tmp), questions)
    print(
        f"{len(questions)} golden test questions in process; {REQUESTS} HTTP requests per concurrency, "
        f"`kbq serve --workers {os.cpu_count()}` on 127.0.0.1 with the load generator on the same cores; "
        f"{os.cpu_count()} CPUs, 1-min load {load_before:.1f} before, {os.getloadavg()[0]:.1f} after\n"
    )
    names = list(found)
    print("| measure | target | " + " | ".join(names) + " |")
    print("|---|---:|" + "---:|" * len(names))
    default = found[names[0]]
    for measure_name in default.speed:
        target = TARGETS.get(measure_name)
        cells = []
        for name in names:
            value = found[name].speed[measure_name]
            ratio = "" if name == names[0] else f" ({value / default.speed[measure_name]:.2f}×)"
            met = "" if target is None else (" ✓" if _meets(value, *target) else " ✗")
            cells.append(f"{value:.1f}{ratio}{met}")
        print(
            f"| {measure_name} | {'' if target is None else f'{target[0]:g}'} | " + " | ".join(cells) + " |"
        )
    for label, key in (
        ("answer support", "support"),
        ("abstention precision", "abstain_precision"),
        ("abstention recall", "abstain_recall"),
        ("answer in the question's language", "lang_match"),
    ):
        for split, of in (("test", lambda m: m.test), ("tune, 5-fold", lambda m: m.tune_cv)):
            cells = [f"{of(found[n]).get(key, float('nan')):.3f}" for n in names]
            print(f"| {label}, {split} | | " + " | ".join(cells) + " |")


def _meets(value: float, target: float, higher_is_better: bool) -> bool:
    return value >= target if higher_is_better else value <= target


if __name__ == "__main__":
    main()
