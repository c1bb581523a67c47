"""kbq against the pipeline a user would otherwise write: LangChain's FAISS vector store over
sentence-transformers (all-MiniLM-L6-v2) embeddings of the same chunks. Build time, cold start and warm
query latency, measured in one run, printed as a Markdown table with ratios.

    python -m benchmarks.naive_langchain            # the index at KB_INDEX_DIR (default .kbq/index)

The naive side is what the LangChain docs show: ``HuggingFaceEmbeddings`` + ``FAISS.from_texts``, saved
with ``save_local`` and loaded with ``load_local`` (which needs ``allow_dangerous_deserialization``: it
unpickles). It only retrieves, with one embedder and no citations or abstention; kbq answers. The cold rows
are fresh processes (median of ``RUNS``, after one warm-up each), interleaved; the warm rows ask the golden
test questions, each system in a process of its own, twice, alternating. Needs langchain-community
(``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from kb.config import Settings
from kb.local_store import LocalStore
from kb.store import indexed_text

RUNS = 3
QUESTION = "which regions have C5?"


def _store_parts() -> tuple[Any, Any]:
    warnings.simplefilter("ignore")  # HuggingFaceEmbeddings is deprecated in favour of another package
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from langchain_community.embeddings import HuggingFaceEmbeddings
    from langchain_community.vectorstores import FAISS

    from kb.minilm_query import shipped_model_dir

    return FAISS, HuggingFaceEmbeddings(model_name=str(shipped_model_dir()))


def build(index_dir: Path, out: Path) -> float:
    """Embed kbq's chunks the naive way and save the store; returns the seconds it took (imports included)."""
    started = time.perf_counter()
    faiss_store, embeddings = _store_parts()
    chunks = [c for _, c in LocalStore.open(index_dir).iter_chunks()]
    store = faiss_store.from_texts(
        [indexed_text(c) for c in chunks], embeddings, metadatas=[{"chunk_id": c.chunk_id} for c in chunks]
    )
    store.save_local(str(out))
    return time.perf_counter() - started


def load(out: Path) -> Any:
    faiss_store, embeddings = _store_parts()
    return faiss_store.load_local(str(out), embeddings, allow_dangerous_deserialization=True)


def _fresh(cmd: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, env=env, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def cold(index_dir: Path, out: Path) -> dict[str, float]:
    env = {**os.environ, "KB_INDEX_DIR": str(index_dir)}
    kbq = str(Path(sys.executable).parent / "kbq")
    commands = {
        "python -c 'import numpy' (floor)": [sys.executable, "-c", "import numpy"],
        f'kbq ask "{QUESTION}" --json': [kbq, "ask", QUESTION, "--json"],
        "naive: load_local + similarity_search": [
            sys.executable,
            "-m",
            "benchmarks.naive_langchain",
            str(out),
        ],
    }
    for cmd in commands.values():
        _fresh(cmd, env)
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(RUNS):
        for name, cmd in commands.items():
            samples[name].append(_fresh(cmd, env))
    return {name: statistics.median(values) for name, values in samples.items()}


def warm(system: str, index_dir: Path, out: Path) -> list[float]:
    """ms per golden test question for one system ("naive", "search" or "ask") in this process."""
    from evals.golden import load_golden
    from kb.knowledge import KnowledgeBase

    if system == "naive":
        store = load(out)
        call = lambda q: store.similarity_search(q, k=10)  # noqa: E731
    else:
        kb = KnowledgeBase.open(Settings.from_env(index_dir=index_dir))
        call = (lambda q: kb.search(q, k=10)) if system == "search" else kb.ask
    questions = [item.question for item in load_golden(split="test")]
    for q in questions[:10]:
        call(q)
    ms = []
    for q in questions:
        started = time.perf_counter()
        call(q)
        ms.append((time.perf_counter() - started) * 1000)
    return ms


WARM = {
    "naive": "naive: similarity_search (k=10)",
    "search": "kbq: kb.search (k=10)",
    "ask": "kbq: kb.ask (answer with citations)",
}


def warm_all(index_dir: Path, out: Path) -> dict[str, list[float]]:
    """Each system in a process of its own (torch's idle OpenMP threads spin and would slow kbq down, and
    the other way round), twice, alternating, so a busy moment hits both alike."""
    ms: dict[str, list[float]] = {name: [] for name in WARM.values()}
    for _ in range(2):
        for system, name in WARM.items():
            cmd = [
                sys.executable,
                "-m",
                "benchmarks.naive_langchain",
                "--warm",
                system,
                str(index_dir),
                str(out),
            ]
            done = subprocess.run(cmd, check=True, capture_output=True, text=True)
            ms[name] += json.loads(done.stdout.strip().splitlines()[-1])
    return ms


def main() -> None:
    if len(sys.argv) == 2:  # the cold naive query, in a fresh process
        print(load(Path(sys.argv[1])).similarity_search(QUESTION, k=5)[0].metadata["chunk_id"])
        return
    if len(sys.argv) == 5 and sys.argv[1] == "--warm":  # one system's warm latencies, as JSON
        print(json.dumps(warm(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]))))
        return
    settings = Settings.from_env()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="kbq-naive-") as tmp:
        out = Path(tmp) / "store"
        built = build(settings.index_dir, out)
        cold_s = cold(settings.index_dir.resolve(), out)
        warm_ms = warm_all(settings.index_dir.resolve(), out)
    print(
        f"{os.cpu_count()} CPUs, 1-min load {load_before:.1f} before, {os.getloadavg()[0]:.1f} after; "
        f"naive store built from the {settings.index_dir} chunks in {built:.1f} s (imports included)\n"
    )
    floor = next(iter(cold_s.values()))
    kbq_cold = cold_s[f'kbq ask "{QUESTION}" --json']
    print("| cold start, fresh process | median s | vs `import numpy` | vs kbq ask |\n|---|---:|---:|---:|")
    for name, seconds in cold_s.items():
        print(f"| {name} | {seconds:.2f} | {seconds / floor:.1f}× | {seconds / kbq_cold:.2f}× |")
    naive_p50 = statistics.median(next(iter(warm_ms.values())))
    print("\n| warm, golden test questions | p50 ms | p95 ms | vs naive p50 |\n|---|---:|---:|---:|")
    for name, values in warm_ms.items():
        p50, p95 = statistics.median(values), sorted(values)[int(0.95 * (len(values) - 1))]
        print(f"| {name} | {p50:.1f} | {p95:.1f} | {p50 / naive_p50:.2f}× |")
    print(json.dumps({"cold_s": cold_s, "built_s": built}), file=sys.stderr)


if __name__ == "__main__":
    main()
