"""`python -m evals.public`: kbq's retrieval on public benchmarks (SciFact, XQuAD en/zh/en→zh), next to
the published figures, run through the product's own code.

The system ``kbq`` is what kbq ships: BM25 + USE + MiniLM (sentence-aware) with kb's per-language-pair weights
(``kb.tuning.FUSION.pair_weights``); ``kbq-use-only`` is the previous default, BM25 + USE with ``DEFAULT_WEIGHTS``.

The modules: ``evals.beir`` reads the data (in place from ``../shared/bench``, ``--bench``; never copied),
``evals.embed_cache`` caches embeddings under ``~/.cache/kbq-bench`` (``--cache``) so reruns take seconds,
``evals.signals`` cuts the corpora into the product's units and computes every raw signal with kb's indexes,
``evals.scoring`` fuses them as ``kb.fusion.fuse`` does (as ``kb.retrieve.Retriever`` does for one question) and computes the metrics, and
``evals.report`` writes the tables; this module is the command.

    python -m evals.public            # everything; writes evals/results/public.json and public.md
    python -m evals.public --quick    # 100 queries per dataset, no tuning, prints only
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from evals.beir import DATASETS, find_bench, half, load_beir, load_queries, subsample
from evals.embed_cache import DEFAULT_CACHE, Cache
from evals.report import RESULTS, TARGETS, markdown, tuning_notes
from evals.scoring import KBQ, kbq_signals, score_system, systems_for
from evals.signals import CHUNKINGS, LEXICAL_VARIANTS, MODELS, ZH_ONLY, Run, build_run
from kb.embed import Embedder
from kb.text import detect_lang

QUICK_QUERIES = 100
# Sentence vectors to compute (DATASET or DATASET:MODEL): SciFact's 56k sentences are embedded with MiniLM
# only, the one embedder its language pair (en → en) uses; USE there weighs 0 (kb.tuning.FUSION.pair_weights).
SENTENCES = "xquad-en,xquad-zh,xquad-en2zh,scifact:minilm"
# Embedders measured on variant units unless --all-variants: SciFact cut at 360 characters is 41k texts, about
# an hour per model on 2 CPU cores, so it is measured lexically only.
VARIANT_MODELS = {("scifact", "chunks"): ()}


def load_embedders(names: Iterable[str]) -> dict[str, Embedder]:
    from kb.embed import load_embedder

    return {n: load_embedder(MODELS[n]) for n in names}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m evals.public", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bench", help="benchmark folder (default ../shared/bench)")
    parser.add_argument(
        "--cache", default=str(DEFAULT_CACHE), help="embedding cache (default ~/.cache/kbq-bench)"
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK_QUERIES} queries per dataset, no tuning"
    )
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--chunkings", default=",".join(CHUNKINGS))
    parser.add_argument(
        "--sentences",
        default=SENTENCES,
        help="DATASET or DATASET:MODEL whose sentences are embedded too (the product's sentence-aware "
        "dense score); 'none' for none",
    )
    parser.add_argument(
        "--all-variants",
        action="store_true",
        help="embed SciFact's 360-character chunks too (41k texts: about an hour per model on 2 cores)",
    )
    parser.add_argument("--no-tune", action="store_true", help="skip the grid search on dev queries")
    parser.add_argument(
        "--out",
        help="folder for public.json and public.md (default evals/results; --quick writes only when given)",
    )
    return parser.parse_args(argv)


def measure(
    name: str,
    bench: Path,
    args: argparse.Namespace,
    embedders: Mapping[str, Embedder],
    cache: Cache,
    chunkings: Sequence[str],
    tuning: bool,
) -> tuple[dict[str, dict[str, float]], Run | None]:
    """Every system on one dataset (nDCG@10 and recall@100 by system name), and its dev run for tuning."""
    spec = DATASETS[name]
    folder = bench / spec.folder
    beir = load_beir(folder, spec.queries, spec.split)
    qids = list(beir.queries)
    dev_qids: list[str] = []
    if spec.dev_split is None:
        dev_qids = half(qids, dev=True)
    elif tuning:
        dq, dr = load_queries(folder, spec.dev_queries, spec.dev_split)
        beir.queries.update(dq)
        beir.qrels.update(dr)
        dev_qids = list(dq)
    if args.quick:
        qids = subsample(qids, QUICK_QUERIES)
    zh = any(detect_lang(t) == "zh" for t in beir.texts[:20])
    lexical = [v for v in LEXICAL_VARIANTS if zh or v not in ZH_ONLY]
    every = list(dict.fromkeys([*qids, *(dev_qids if tuning else [])]))
    spec_sentences = [x.split(":") for x in args.sentences.split(",")]
    results: dict[str, dict[str, float]] = {}
    dev_run = None
    for chunking in chunkings:
        shipped_unit = chunking == KBQ.chunking
        sentences = {
            m for m in embedders if shipped_unit and ([name] in spec_sentences or [name, m] in spec_sentences)
        }
        allowed = VARIANT_MODELS.get((name, chunking))
        models = {m: e for m, e in embedders.items() if allowed is None or args.all_variants or m in allowed}
        run_all = build_run(name, beir, chunking, every, models, cache, lexical, sentences)
        run = run_all.subset(qids)
        if shipped_unit:
            signals = kbq_signals(run)
            if signals is None:
                print(f"{name}: kbq skipped, its signals need --models use,minilm and sentence vectors")
            else:
                results["kbq"] = score_system(run, signals, KBQ.weights)
                if spec.dev_split is None and not args.quick:
                    held = run.subset(half(qids, dev=False))
                    results["kbq@test-half"] = score_system(held, signals, KBQ.weights)
            if tuning:
                dev_run = run_all.subset([q for q in dev_qids if q in run_all.qids])
        suffix = "" if shipped_unit else f"@{chunking}"
        for system, (signals, weights) in systems_for(run).items():
            results[system + suffix] = score_system(run, signals, weights)
    print(f"{name}: {len(beir.doc_ids)} documents, {len(qids)} queries", end="", flush=True)
    return results, dev_run


def encoding_notes(
    name: str, embedders: Mapping[str, Embedder], cache: Cache, chunkings: Sequence[str]
) -> list[str]:
    """How long the first encoding of each of the dataset's texts took (a shared corpus is noted once)."""
    notes = []
    for model in embedders.values() if DATASETS[name].corpus_key == name else ():
        for part in [*chunkings, "sentences"]:
            s = cache.seconds(f"{name}-{part}", model.model_id)
            if s is not None:
                notes.append(
                    f"- {name} {part}: encoding with {model.model_id} took {s:.0f}s when first "
                    "cached (2 shared CPU cores)"
                )
    return notes


def main(argv: Sequence[str] | None = None, embedders: Mapping[str, Embedder] | None = None) -> int:
    """Run the benchmarks; ``embedders`` (alias -> embedder) replaces the real models, for tests."""
    args = parse_args(argv)
    bench = find_bench(args.bench)
    cache = Cache(Path(args.cache).expanduser())
    chunkings = sorted((c for c in args.chunkings.split(",") if c), key=lambda c: c != KBQ.chunking)
    wanted = [m for m in args.models.split(",") if m]
    embedders = {m: embedders[m] for m in wanted} if embedders is not None else load_embedders(wanted)
    tuning = not (args.quick or args.no_tune)
    t0 = time.perf_counter()
    results: dict[str, dict[str, dict[str, float]]] = {}
    dev_runs: dict[str, Run] = {}
    notes: list[str] = []
    for name in (d for d in args.datasets.split(",") if d):
        start = time.perf_counter()
        results[name], dev_run = measure(name, bench, args, embedders, cache, chunkings, tuning)
        print(f", {time.perf_counter() - start:.0f}s", flush=True)
        if dev_run is not None:
            dev_runs[name] = dev_run
        notes += encoding_notes(name, embedders, cache, chunkings)
        for system, m in results[name].items():
            print(f"  {system:28s} nDCG@10 {m['ndcg@10']:.4f}  recall@100 {m['recall@100']:.4f}")
    tuned = tuning_notes(dev_runs) if dev_runs else []
    total = time.perf_counter() - t0
    notes.append(
        f"- this run took {total:.0f}s on {os.cpu_count()} CPU cores, embeddings not yet cached included"
    )
    notes += tuned
    print(f"total {total:.0f}s")
    failed = [n for n in results if "kbq" in results[n] and results[n]["kbq"]["ndcg@10"] < TARGETS[n]]
    if failed and not args.quick:
        print("below target: " + ", ".join(failed))
    if args.out or not args.quick:
        out = Path(args.out) if args.out else RESULTS
        out.mkdir(parents=True, exist_ok=True)
        (out / "public.json").write_text(
            json.dumps(results, indent=1, sort_keys=False) + "\n", encoding="utf-8"
        )
        (out / "public.md").write_text(markdown(results, notes), encoding="utf-8")
        print(f"wrote {out / 'public.json'} and {out / 'public.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
