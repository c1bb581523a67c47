"""The build side of ``python -m benchmarks.scale``, run in its own process so its memory is its own.

    python -m benchmarks.scale_build < CONFIG.json     # written by benchmarks.scale

Streams the generated corpus into a fresh store, batch by batch, as ``kbq ingest`` does: under the writer
lock, ``open_writer(rebuild=True)``, ``upsert`` per batch, one ``publish``. Generating a batch (text and
vectors, which stand in for parsing and embedding) is timed apart from the store's own work. Progress goes
to stderr; one JSON object to stdout.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from benchmarks.scale_data import prepare, records
from benchmarks.scale_server import memory, tree_rss
from ingest import PARSER_VERSION
from kb.config import Settings
from kb.embed import load_embedder
from kb.indexer import writer_lock
from kb.knowledge import indexed_names, sentence_only_names
from kb.stores import open_writer


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> None:
    # the config comes on stdin, not the command line: a broad `pkill -f <store name>` elsewhere must miss us
    config = json.load(sys.stdin)
    settings = Settings(
        index_dir=Path(config["index_dir"]), store=config["store"], milvus_uri=config.get("milvus_uri", "")
    )
    roles = Settings(embed_model=config["models"], relevance_model=config.get("relevance", "none"))
    names = indexed_names(roles)
    embedders = [load_embedder(name, Path(config["model_cache"])) for name in names]
    work = prepare(embedders, config["seed"], config["zh_share"], log=log, with_queries=False)
    out: dict = {"load": {"start": os.getloadavg()}, "memory": {"start": memory()}}
    generate = upsert = 0.0
    docs = chunks = units = 0
    peak_tree = 0.0
    started = time.perf_counter()
    with writer_lock(settings.index_dir):
        writer = open_writer(settings, embedders, PARSER_VERSION, True, sentence_only_names(roles))
        try:
            batches = records(work, config["chunks"], config["batch_docs"])
            while True:
                t = time.perf_counter()
                batch = next(batches, None)
                generate += time.perf_counter() - t
                if batch is None:
                    break
                t = time.perf_counter()
                writer.upsert(batch)
                upsert += time.perf_counter() - t
                docs += len(batch)
                chunks += sum(len(r.chunks) for r in batch)
                units += sum(len(r.units) for r in batch)
                peak_tree = max(peak_tree, tree_rss())
                if docs % (10 * config["batch_docs"]) == 0:
                    log(
                        f"  {config['store']} {chunks:,} chunks: upsert {upsert:.0f}s, generate {generate:.0f}s, "
                        f"rss {memory()['rss_mb']} MiB"
                    )
            t = time.perf_counter()
            version = writer.publish()
            publish = time.perf_counter() - t
        finally:
            writer.close()
    peak_tree = max(peak_tree, tree_rss())
    out |= {
        "models": names,
        "documents": docs,
        "chunks": chunks,
        "units": units,
        "version": version,
        "generate_s": round(generate, 1),
        "upsert_s": round(upsert, 1),
        "publish_s": round(publish, 1),
        "build_s": round(upsert + publish, 1),
        "wall_s": round(time.perf_counter() - started, 1),
        "peak_tree_rss_mb": round(peak_tree),
    }
    out["memory"]["end"] = memory()
    out["load"]["end"] = os.getloadavg()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
