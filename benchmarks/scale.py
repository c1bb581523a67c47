"""How kbq's store scales: build, disk, memory, latency, recall and upsert at 10k to 1M chunks.

    python -m benchmarks.scale --chunks 10000,100000,1000000            # the local store
    python -m benchmarks.scale --chunks 100000 --stores milvus          # Milvus Lite
    python -m benchmarks.scale --chunks 20000 --dry-run                 # no results written

The corpus is generated from real text (benchmarks/scale_text.py) with vectors drawn to match the real
embedders' distribution (benchmarks/scale_vectors.py, benchmarks/scale_data.py); the real pool, calibration
chunks and questions are embedded once and cached under ~/.cache/kbq-bench/scale. For each store and size:

1. a fresh process builds the store, streaming batches of 2,000 documents (benchmarks/scale_build.py);
   build time is the store's upsert + publish, generating the batches is timed apart;
2. the index size on disk is the folder's allocated bytes (versions and segments, or the Milvus Lite file);
3. a fresh process opens it as a server would (benchmarks/scale_server.py): memory, ``kb.search`` latency
   with and without question embedding, a profile, recall@10 against ``exact=True``, and the upsert of one
   changed document with the reopen that makes it visible.

Rows are merged into benchmarks/results/scale.json (by store and size) and scale.md is rewritten from it.
Indexes go to --workdir (default ~/.cache/kbq-bench/scale/runs) and are removed afterwards unless --keep.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks.scale_data import (
    CACHE,
    Workload,
    changed_record,
    load_queries,
    prepare,
    save_queries,
    save_record,
)
from benchmarks.scale_report import TABLE_HEAD, markdown, row_line
from benchmarks.scale_server import recall_summary, same_records
from kb.config import DEFAULT_MODEL, DEFAULT_RELEVANCE, Settings
from kb.embed import MINILM_ID, USE_ID, load_embedder
from kb.knowledge import indexed_names

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
# Recall's reference per store: exact=True through the store itself, or over a local store of the same
# records (Milvus Lite hands every row's vectors over as Python floats: hours for one pass at 100,000 chunks)
REFERENCE = {"local": "exact", "milvus": "local"}


def disk_usage(path: Path) -> dict[str, int]:
    """Allocated and apparent bytes of everything under ``path`` (links not followed)."""
    allocated = apparent = 0
    for folder, _, files in os.walk(path):
        for name in files:
            st = os.lstat(os.path.join(folder, name))
            allocated += st.st_blocks * 512
            apparent += st.st_size
    return {"allocated": allocated, "apparent": apparent}


def machine() -> dict:
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = Path("/proc/meminfo").read_text().split("\n", 1)[0].split()[1]
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(int(mem) / 2**20, 1),
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def code_version() -> dict:
    """The commit measured, and the kb/ files that differed from it (others edit while a run goes)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "kb_changed": git("status", "--porcelain", "kb").split("\n"),
    }


def child(module: str, config: dict, folder: Path) -> dict:
    """Run ``python -m module < CONFIG`` in a fresh process; its stderr passes through, its stdout is JSON."""
    path = folder / f"{module.rsplit('.', 1)[-1]}.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    with path.open("rb") as stdin:
        done = subprocess.run(
            [sys.executable, "-m", module],
            cwd=ROOT,
            stdin=stdin,
            stdout=subprocess.PIPE,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"{module} exited {done.returncode}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    path.with_suffix(".out.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    return result


def run_one(args: argparse.Namespace, work: Workload, store: str, chunks: int) -> dict:
    folder = args.workdir / f"{store}-{chunks}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    base = {
        "index_dir": str(folder / "index"),
        "store": store,
        "milvus_uri": str(folder / "milvus.db") if store == "milvus" else "",
        "models": args.models,
        "relevance": args.relevance,
        "model_cache": str(CACHE / "model-cache"),
    }
    started = dt.datetime.now(dt.UTC)
    print(f"[{started:%H:%M:%S}] {store} {chunks:,} chunks: building", file=sys.stderr, flush=True)
    build = child(
        "benchmarks.scale_build",
        base
        | {"chunks": chunks, "seed": args.seed, "zh_share": args.zh_share, "batch_docs": args.batch_docs},
        folder,
    )
    size = disk_usage(folder)
    record = folder / "changed.json"
    save_record(changed_record(work, build["documents"] // 2), record)
    print(f"[{dt.datetime.now(dt.UTC):%H:%M:%S}] {store} {chunks:,}: querying", file=sys.stderr, flush=True)
    server = child(
        "benchmarks.scale_server",
        base
        | {"queries": str(args.workdir / "queries.json"), "record": str(record)}
        | {"recall_queries": args.recall_queries, "timed_queries": args.queries, "retrieval": args.retrieval}
        | {"reference": REFERENCE[store]},
        folder,
    )
    if REFERENCE[store] == "local":
        found, mark = server.pop("approx_top10"), server.pop("fingerprint")
        server["recall_at_10"] = local_reference(args, base, chunks, mark, found)
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "store": store,
        "chunks": chunks,
        "models": build["models"],
        "code": code_version(),
        "date": started.isoformat(timespec="seconds"),
        "machine": machine(),
        "wall_s": round((dt.datetime.now(dt.UTC) - started).total_seconds()),
        "index_bytes": size,
        "build": build,
        "server": server,
    }


def local_reference(
    args: argparse.Namespace, base: dict, chunks: int, mark: dict, found: list[list[str]]
) -> dict:
    """Recall@10 of a store too slow to score every row through (Milvus Lite hands vectors over as Python
    floats) against exact search over a local store built from the same records: the stores score alike
    (tests/kb/test_store_contract.py), so its exact top 10 is this store's too. (Its sentence vectors are
    float16, Milvus's float32: a near tie at rank 10 may fall either way.) ``mark``: the measured store's
    fingerprint, which the reference must match."""
    folder = args.workdir / f"local-{chunks}-reference"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    local = base | {"index_dir": str(folder / "index"), "store": "local", "milvus_uri": ""}
    print(
        f"[{dt.datetime.now(dt.UTC):%H:%M:%S}] local {chunks:,}: the exact reference",
        file=sys.stderr,
        flush=True,
    )
    try:
        child(
            "benchmarks.scale_build",
            local
            | {"chunks": chunks, "seed": args.seed, "zh_share": args.zh_share, "batch_docs": args.batch_docs},
            folder,
        )
        reference = child(
            "benchmarks.scale_server",
            local
            | {
                "task": "reference",
                "queries": str(args.workdir / "queries.json"),
                "recall_queries": len(found),
            },
            folder,
        )
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    if not same_records(reference["fingerprint"], mark):
        raise RuntimeError("the local reference was not built from the same records as the store measured")
    queries = load_queries(args.workdir / "queries.json", [])[: len(found)]
    return recall_summary(
        queries,
        reference["truth"],
        found,
        reference["exact_ms"],
        "exact=True over a local store of the same records",
    )


def run_key(row: dict) -> tuple:
    """A row replaces an earlier one of the same store, size and models."""
    return row["store"], row["chunks"], tuple(row.get("models", [USE_ID, MINILM_ID]))


def merge(path: Path, rows: list[dict], method: dict, command: str) -> dict:
    results = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {"runs": []}
    keys = {run_key(r) for r in rows}
    kept = [r for r in results["runs"] if run_key(r) not in keys]
    results["runs"] = sorted(
        kept + rows, key=lambda r: (r["store"] != "local", r["store"], len(r.get("models", [])), r["chunks"])
    )
    results["method"] = method
    results["commands"] = sorted(set(results.get("commands", [])) | {command})
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chunks", default="10000,100000,1000000", help="corpus sizes, comma-separated")
    parser.add_argument("--stores", default="local", help="local, milvus or local,milvus")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--zh-share", type=float, default=0.5, help="share of Chinese documents")
    parser.add_argument("--batch-docs", type=int, default=2000, help="documents per upsert batch")
    parser.add_argument("--queries", type=int, default=200, help="questions timed (of 200)")
    parser.add_argument("--recall-queries", type=int, default=100, help="questions searched exactly too")
    parser.add_argument("--models", default=DEFAULT_MODEL, help="retrieval embedders (KB_EMBED_MODEL)")
    parser.add_argument(
        "--relevance",
        default=DEFAULT_RELEVANCE,
        help="the relevance model the index also holds vectors of (KB_RELEVANCE_MODEL; 'none': left out)",
    )
    parser.add_argument(
        "--retrieval",
        type=lambda text: {k: int(v) for k, v in (kv.split("=") for kv in text.split(",") if kv)},
        default={},
        help="Retriever overrides to try (kb.tuning.Retrieval), e.g. dense_candidates=200 (with --dry-run)",
    )
    parser.add_argument("--workdir", type=Path, default=CACHE / "runs")
    parser.add_argument("--keep", action="store_true", help="keep the built indexes")
    parser.add_argument("--dry-run", action="store_true", help="print, write no results")
    args = parser.parse_args(argv)
    sizes = [int(x) for x in args.chunks.split(",") if x.strip()]
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    names = indexed_names(Settings(embed_model=args.models, relevance_model=args.relevance))
    embedders = [load_embedder(n, CACHE / "model-cache") for n in names]
    work = prepare(embedders, args.seed, args.zh_share, log=lambda m: print(m, file=sys.stderr, flush=True))
    args.workdir.mkdir(parents=True, exist_ok=True)
    save_queries(work.queries, args.workdir / "queries.json")
    command = f"python -m benchmarks.scale --chunks {args.chunks} --stores {args.stores}"
    command += "".join(
        f" --{flag} {value}"
        for flag, value, default in (
            ("queries", args.queries, 200),
            ("recall-queries", args.recall_queries, 100),
            ("relevance", args.relevance, DEFAULT_RELEVANCE),
        )
        if value != default
    )
    print(TABLE_HEAD)
    for store in stores:
        for chunks in sizes:
            row = run_one(args, work, store, chunks)
            print(row_line(row), flush=True)
            if args.dry_run:
                continue
            RESULTS.mkdir(parents=True, exist_ok=True)
            results = merge(RESULTS / "scale.json", [row], work.method, command)
            (RESULTS / "scale.json").write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
            (RESULTS / "scale.md").write_text(markdown(results), encoding="utf-8")


if __name__ == "__main__":
    main()
