"""The query side of ``python -m benchmarks.scale``, run in a fresh process as a server would be.

    python -m benchmarks.scale_server < CONFIG.json     # written by benchmarks.scale

Loads the real question encoders and the store, warms up, then times ``kb.search`` (Retriever.search, k=10)
over the questions without and with question embedding, reports VmRSS/VmHWM (this process and its children,
e.g. the Milvus Lite server), profiles where a question's time goes, measures recall@10 of the default search
against ``exact=True``, and finally upserts one changed document, publishes it and reopens the store, as
``kbq ingest`` and a reloading server would (in this process: Milvus Lite serves one process at a time).
Prints one JSON object.
"""

from __future__ import annotations

import cProfile
import hashlib
import io
import json
import os
import pstats
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from benchmarks.scale_data import Query, load_queries, load_record
from ingest import PARSER_VERSION
from kb.config import Settings
from kb.embed import Embedder, embedder_names, load_embedder
from kb.indexer import writer_lock
from kb.knowledge import indexed_names
from kb.retrieve import Retriever, Signals
from kb.store import SentenceRows, Store
from kb.stores import open_store, open_writer
from kb.text import detect_lang
from kb.tuning import LEXICAL, RETRIEVAL
from kb.types import Hit

WARMUP = 10
T = TypeVar("T")
EXACT_BLOCKS = {"local": 100_000, "milvus": 10_000}  # rows per block of the exact reference (Milvus hands
# vectors over as Python floats: 10,000 rows' sentences are ~0.8 GB of them)
REFERENCE_CHECK_BELOW = 200_000  # chunks up to which the exact reference is checked against exact=True


def memory() -> dict[str, float]:
    """This process's VmRSS (and its anonymous and file-backed parts: memory-mapped index files count while
    their pages are resident), VmHWM, and its process tree's current RSS, in MiB."""
    status = dict(
        line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line
    )
    mib = {key: round(int(status[key].split()[0]) / 1024) for key in ("VmRSS", "RssAnon", "RssFile", "VmHWM")}
    return {
        "rss_mb": mib["VmRSS"],
        "anon_mb": mib["RssAnon"],
        "file_mb": mib["RssFile"],
        "hwm_mb": mib["VmHWM"],
        "tree_rss_mb": round(tree_rss()),
    }


def tree_rss(pid: int | None = None) -> float:
    """RSS of a process and all its descendants, in MiB."""
    pid = pid or os.getpid()
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return total


def percentiles(ms: list[float]) -> dict[str, float]:
    a = np.array(ms)
    return {
        "n": len(ms),
        "p50": round(float(np.percentile(a, 50)), 2),
        "p90": round(float(np.percentile(a, 90)), 2),
        "p99": round(float(np.percentile(a, 99)), 2),
        "mean": round(float(a.mean()), 2),
        "max": round(float(a.max()), 2),
    }


def _timed(fn: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[float, T]:
    """(milliseconds, result) of ``fn(*args, **kwargs)``."""
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return (time.perf_counter() - start) * 1000, out


def _no_embed_pass(retriever: Retriever, queries: list[Query]) -> tuple[dict, list[list[str]]]:
    signals_ms, fuse_ms, total_ms, found = [], [], [], []
    for q in queries:
        a, sig = _timed(retriever.signals, q.text, vectors=q.vectors)
        b, hits = _timed(retriever.search, q.text, k=10, signals=sig)
        signals_ms.append(a)
        fuse_ms.append(b)
        total_ms.append(a + b)
        found.append([h.chunk.chunk_id for h in hits])
    return {"total": total_ms, "signals": signals_ms, "fuse_topk": fuse_ms}, found


def search_timings(retriever: Retriever, queries: list[Query]) -> tuple[dict, list[list[str]]]:
    """Each question without question embedding the first time it is asked since the store opened (its
    rows may still have to be read from disk) and once more, then with question embedding (its rows read
    already: embedding plus a repeated search)."""
    first, found = _no_embed_pass(retriever, queries)
    again, _ = _no_embed_pass(retriever, queries)
    embed_ms = [_timed(retriever.embed, q.text)[0] for q in queries]
    with_ms = [_timed(retriever.search, q.text, k=10)[0] for q in queries]
    stages = {
        "signals": percentiles(first["signals"]),
        "fuse_topk": percentiles(first["fuse_topk"]),
        "signals_repeat": percentiles(again["signals"]),
        "embed": percentiles(embed_ms),
    }
    timings = {
        "no_embed": percentiles(first["total"]),
        "no_embed_repeat": percentiles(again["total"]),
        "with_embed": percentiles(with_ms),
        "stages": stages,
    }
    return timings, found


def profile(retriever: Retriever, queries: list[Query], top: int = 14) -> list[dict]:
    """Where the time of a search without embedding goes: the functions with the most own time."""
    prof = cProfile.Profile()
    prof.enable()
    for q in queries:
        retriever.search(q.text, k=10, signals=retriever.signals(q.text, vectors=q.vectors))
    prof.disable()
    stats = pstats.Stats(prof, stream=io.StringIO())
    rows = []
    for (file, line, name), (_, calls, own, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{Path(file).parent.name}/{Path(file).name}:{line}({name})" if line else name
        rows.append(
            {"function": where, "calls": calls, "own_ms_per_q": own * 1000 / len(queries)}
            | {"cum_ms_per_q": cumulative * 1000 / len(queries)}
        )
    rows.sort(key=lambda r: -r["own_ms_per_q"])
    return [{k: round(v, 2) if isinstance(v, float) else v for k, v in r.items()} for r in rows[:top]]


def exact_signals(retriever: Retriever, query: str, vectors: Mapping[str, np.ndarray]) -> Signals:
    """``retriever.signals(query, vectors, exact=True)`` with the sentence vectors read a block of rows at a
    time: the same raw scores over every live row, without holding every sentence vector of a million
    chunks in memory at once (~9 GB as float32). Only what ``search`` reads is filled in."""
    store = retriever.store
    rows = store.live_rows()
    raw = {LEXICAL: store.lexical_scores(query, rows)}
    for model_id in retriever.embedders:
        raw[model_id] = np.zeros(len(rows), np.float32)
    block = EXACT_BLOCKS["milvus" if type(store).__name__ == "MilvusStore" else "local"]
    for i in range(0, len(rows), block):
        part = rows[i : i + block]
        scores, _ = retriever.dense_signals(vectors, part, store.sentences(part, list(retriever.embedders)))
        for model_id, values in scores.items():
            raw[model_id][i : i + block] = values
    empty = {m: np.zeros(0, np.float32) for m in retriever.embedders}
    return Signals(
        detect_lang(query),
        rows,
        store.langs(rows),
        store.kinds(rows),
        None,
        raw,
        SentenceRows.empty(store.dims),
        empty,
    )


def exact_search(retriever: Retriever, q: Query) -> list[Hit]:
    return retriever.search(q.text, k=10, signals=exact_signals(retriever, q.text, q.vectors))


def reference_check(retriever: Retriever, queries: list[Query]) -> dict:
    """Whether ``exact_signals`` ranks as the product's own ``exact=True`` (run where memory allows)."""
    same = 0
    for q in queries:
        ours = retriever.search(q.text, k=10, signals=exact_signals(retriever, q.text, q.vectors))
        theirs = retriever.search(q.text, k=10, signals=retriever.signals(q.text, q.vectors, exact=True))
        same += [h.row for h in ours] == [h.row for h in theirs]
    return {"queries": len(queries), "identical_top10": same}


def exact_top10(retriever: Retriever, queries: list[Query]) -> tuple[list[list[str]], list[float]]:
    """Each question's exact top 10 (chunk ids) and the milliseconds each exact search took."""
    truth, exact_ms = [], []
    for q in queries:
        ms, hits = _timed(exact_search, retriever, q)
        exact_ms.append(ms)
        truth.append([h.chunk.chunk_id for h in hits])
    return truth, exact_ms


def recall(retriever: Retriever, queries: list[Query], approx: list[list[str]]) -> dict:
    """Recall@10 of the default search against exact search over the same store, and how much of the
    exact top 10 the approximate candidate set held (the rest of the loss is ranking: each signal's centre
    and spread come from the store's sample, not from every row)."""
    truth, exact_ms = exact_top10(retriever, queries)
    held = []
    if not retriever.store.exact:
        for q, ids in zip(queries, truth, strict=True):
            candidates = {
                retriever.store.chunk(int(r)).chunk_id for r in retriever.candidates(q.text, q.vectors)
            }
            held.append(len(set(ids) & candidates) / max(len(ids), 1))
    out = recall_summary(queries, truth, approx, exact_ms, "exact=True over the same store")
    out["exact_top10_in_candidates"] = round(float(np.mean(held)), 4) if held else 1.0
    return out


def recall_summary(
    queries: list[Query],
    truth: list[list[str]],
    found: list[list[str]],
    exact_ms: list[float],
    reference: str,
) -> dict:
    """Recall@10 of ``found`` against ``truth`` (chunk ids per question), overall and by question kind."""
    n = min(len(truth), len(found))
    values = np.array(
        [len(set(t) & set(f)) / max(len(t), 1) for t, f in zip(truth[:n], found[:n], strict=True)]
    )

    def mean_where(keep: list[bool]) -> float:
        return round(float(values[keep].mean()), 4) if any(keep) else float("nan")

    return {
        "n": n,
        "reference": reference,
        "mean": round(float(values.mean()), 4),
        "min": round(float(values.min()), 2),
        "perfect_share": round(float((values == 1).mean()), 3),
        "by_origin": {o: mean_where([q.origin == o for q in queries[:n]]) for o in ("golden", "sentence")},
        "by_lang": {lang: mean_where([q.lang == lang for q in queries[:n]]) for lang in ("en", "zh")},
        "exact_ms": percentiles(exact_ms),
    }


def upsert_one(
    settings: Settings, models: list[Embedder], retriever: Retriever, record_path: Path
) -> tuple[dict, Store]:
    """Replace one document as ``kbq ingest`` would (``models``: every model the index holds vectors of),
    then reopen the store as a reloading server would."""
    store = retriever.store
    record = load_record(record_path)
    out: dict = {"doc_id": record.document.doc_id, "chunks": len(record.chunks)}
    start = time.perf_counter()
    with writer_lock(settings.index_dir):
        only_answering = [m.model_id for m in models if m.model_id not in retriever.embedders]
        writer = open_writer(settings, models, PARSER_VERSION, sentence_only=only_answering)
        try:
            out["open_writer_s"] = round(time.perf_counter() - start, 3)
            t = time.perf_counter()
            writer.upsert([record])
            out["upsert_s"] = round(time.perf_counter() - t, 3)
            t = time.perf_counter()
            out["version"] = writer.publish()
            out["publish_s"] = round(time.perf_counter() - t, 3)
        finally:
            writer.close()
    out["total_s"] = round(time.perf_counter() - start, 3)
    t = time.perf_counter()
    ids = [m.model_id for m in models]
    reopened = open_store(settings, ids, reuse=store) if settings.store == "local" else None
    if reopened is None:  # Milvus Lite serves one client at a time
        store.close()
        reopened = open_store(settings, ids)
    retriever = Retriever(
        reopened, retriever.embedders, retrieval=retriever.retrieval, relevance=retriever.relevance
    )
    out["reopen_s"] = round(time.perf_counter() - t, 3)
    doc_id = record.document.doc_id
    document = reopened.document(doc_id)
    stored = [reopened.chunk(int(r)).text for r in reopened.document_rows(doc_id)]
    out["new_text_visible"] = (
        document is not None
        and document.text == record.document.text
        and stored == [c.text for c in record.chunks]
    )
    hits = retriever.search(record.chunks[0].text, k=10)  # its own first chunk: a query only it matches whole
    out["found_by_search"] = any(h.chunk.doc_id == doc_id for h in hits)
    return out, reopened


def fingerprint(store: Store, models: list[str], docs: int = 3) -> dict:
    """What two stores built from the same records share: every document's digest, and the chunk vectors
    of a few documents (by chunk id), so a reference built from other records cannot pass for this one's."""
    digests = sorted(store.digests().items())
    vectors: dict[str, list[float]] = {}
    for doc_id, _ in digests[:: max(1, len(digests) // docs)][:docs]:
        rows = store.document_rows(doc_id)
        ids = [store.chunk(int(r)).chunk_id for r in rows]
        for m in models:
            vectors |= {
                f"{m}|{c}": v.tolist() for c, v in zip(ids, store.chunk_vectors(m, rows), strict=True)
            }
    sha = hashlib.sha256(json.dumps(digests).encode()).hexdigest()
    return {"digests_sha": sha, "vectors": vectors}


def same_records(a: dict, b: dict) -> bool:
    """Whether two fingerprints are of stores built from the same records (vectors equal to float32 noise)."""
    return (
        a["digests_sha"] == b["digests_sha"]
        and a["vectors"].keys() == b["vectors"].keys()
        and all(np.allclose(a["vectors"][k], b["vectors"][k], atol=1e-5) for k in a["vectors"])
    )


def reference_main(config: dict, retriever: Retriever) -> None:
    """Only the exact top 10 of the recall questions, as JSON: the reference for another store's recall."""
    queries = load_queries(Path(config["queries"]), list(retriever.embedders))[: config["recall_queries"]]
    truth, exact_ms = exact_top10(retriever, queries)
    print(
        json.dumps(
            {
                "truth": truth,
                "exact_ms": exact_ms,
                "fingerprint": fingerprint(retriever.store, list(retriever.embedders)),
            }
        )
    )


def main() -> None:
    # the config comes on stdin, not the command line: a broad `pkill -f <store name>` elsewhere must miss us
    config = json.load(sys.stdin)
    settings = Settings(
        index_dir=Path(config["index_dir"]), store=config["store"], milvus_uri=config.get("milvus_uri", "")
    )
    out: dict = {"memory": {"start": memory()}, "load": {"start": os.getloadavg()}}
    models = []  # as a server loads them: the retrieval embedders, then the relevance model
    for name in indexed_names(
        Settings(embed_model=config["models"], relevance_model=config.get("relevance", "none"))
    ):
        e = load_embedder(name, Path(config["model_cache"]))
        e.embed_queries(["warm up the question encoder"])
        models.append(e)
    retrieval_ids = embedder_names(config["models"])
    embedders = {e.model_id: e for e in models if e.model_id in retrieval_ids}
    scorer = next((e for e in models if e.model_id not in retrieval_ids), None)
    out["memory"]["models"] = memory()
    open_ms, store = _timed(open_store, settings, [e.model_id for e in models])
    retrieval = replace(RETRIEVAL, **config.get("retrieval", {}))
    retriever_ms, retriever = _timed(Retriever, store, embedders, retrieval=retrieval, relevance=scorer)
    out["retrieval"] = asdict(retrieval)
    out["open_s"] = round(open_ms / 1000, 3)
    out["retriever_s"] = round(retriever_ms / 1000, 3)
    if config.get("task") == "reference":
        reference_main(config, retriever)
        return
    out["exact_store"] = bool(store.exact)
    out["counts"] = store.manifest["counts"]
    out["memory"]["opened"] = memory()
    queries = load_queries(Path(config["queries"]), list(embedders))[: config.get("timed_queries", 200)]
    search_timings(retriever, queries[:WARMUP])
    out["search_ms"], approx = search_timings(retriever, queries)
    out["memory"]["searched"] = memory()
    out["load"]["searched"] = os.getloadavg()
    out["profile"] = profile(retriever, queries[: config.get("profile_queries", 40)])
    n = config.get("recall_queries", 100)
    if config.get("reference", "exact") == "exact":
        if store.size() <= REFERENCE_CHECK_BELOW:
            out["exact_reference_check"] = reference_check(retriever, queries[:10])
        out["recall_at_10"] = recall(retriever, queries[:n], approx[:n])
    else:  # the caller compares with exact search over another store built from the same records
        out["approx_top10"] = approx[:n]
        out["fingerprint"] = fingerprint(store, list(embedders))
    out["memory"]["after_exact"] = memory()
    out["upsert"], store = upsert_one(settings, models, retriever, Path(config["record"]))
    out["memory"]["end"] = memory()
    out["load"]["end"] = os.getloadavg()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
