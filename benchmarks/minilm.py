"""The MiniLM question path, alternatives side by side: kbq's numpy forward pass, onnxruntime and
sentence-transformers (torch), at one and two threads. Prints a Markdown table.

    python -m benchmarks.minilm

Each variant runs in a fresh process of its own (idle torch or BLAS threads from one would spin against
the next): "ready" is the time from process start to its first vector (imports, model load, session),
then every golden test question is embedded one at a time. CPU is ``time.process_time`` (all threads),
so a second thread that only spins shows up as cost. "max |Δ|" compares the vectors with
sentence-transformers' own, computed in the same process.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

VARIANTS = {
    "numpy (kb/minilm_query.py), 1 BLAS thread": ("numpy", 1),
    "numpy, 2 BLAS threads": ("numpy", 2),
    "onnxruntime (kb/minilm_onnx.py), 1 thread": ("onnx", 1),
    "onnxruntime, 2 threads": ("onnx", 2),
    "sentence-transformers (torch), 1 thread": ("torch", 1),
    "sentence-transformers (torch), 2 threads": ("torch", 2),
}


def _encoder(kind: str, threads: int):  # type: ignore[no-untyped-def]
    if kind == "numpy":
        from kb.minilm_query import MiniLMQueryEncoder

        return MiniLMQueryEncoder(threads=threads).encode
    if kind == "onnx":
        from kb.minilm_onnx import MiniLMOnnxEncoder

        return MiniLMOnnxEncoder(threads=threads).encode
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from sentence_transformers import SentenceTransformer

    from kb.minilm_query import shipped_model_dir

    torch.set_num_threads(threads)
    model = SentenceTransformer(str(shipped_model_dir()), device="cpu")
    return lambda texts: model.encode(list(texts), normalize_embeddings=True, convert_to_numpy=True)


def run_variant(kind: str, threads: int, started: float) -> dict[str, object]:
    """In the fresh process: time to the first vector, then per-question CPU and wall ms."""
    import numpy as np

    from evals.golden import load_golden

    encode = _encoder(kind, threads)
    encode(["which regions have C5?"])
    ready = time.time() - started
    questions = [item.question for item in load_golden(split="test")]
    for q in questions[:10]:
        encode([q])
    cpu, wall, vectors = [], [], []
    for q in questions:
        c, w = time.process_time(), time.perf_counter()
        vectors.append(encode([q])[0])
        cpu.append((time.process_time() - c) * 1000)
        wall.append((time.perf_counter() - w) * 1000)
    ours = np.array(vectors)
    reference = _encoder("torch", 1)(questions) if kind != "torch" else ours
    return {
        "ready_s": ready,
        "cpu_ms": statistics.median(cpu),
        "wall_ms": statistics.median(wall),
        "max_diff": float(np.abs(ours - reference).max()),
    }


def main() -> None:
    if len(sys.argv) == 4:  # one variant, in its own process
        print(json.dumps(run_variant(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))))
        return
    load = os.getloadavg()[0]
    rows = {}
    for name, (kind, threads) in VARIANTS.items():
        cmd = [sys.executable, "-m", "benchmarks.minilm", kind, str(threads), repr(time.time())]
        done = subprocess.run(cmd, check=True, capture_output=True, text=True)
        rows[name] = json.loads(done.stdout.strip().splitlines()[-1])
    base = rows[next(iter(rows))]
    print(
        f"golden test questions one at a time; {os.cpu_count()} CPUs, 1-min load {load:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after\n"
    )
    print(
        "| MiniLM question encoder | ready s | CPU ms / question (p50) | vs numpy 1 thread | wall ms (p50) | max abs Δ vs sentence-transformers |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        print(
            f"| {name} | {r['ready_s']:.2f} | {r['cpu_ms']:.2f} | {r['cpu_ms'] / base['cpu_ms']:.2f}× | "
            f"{r['wall_ms']:.2f} | {r['max_diff']:.1e} |"
        )


if __name__ == "__main__":
    main()
