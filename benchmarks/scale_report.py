"""Markdown for ``python -m benchmarks.scale`` (benchmarks/results/scale.md), from its JSON."""

from __future__ import annotations

from benchmarks.scale_text import CHUNK_CHARS
from benchmarks.scale_vectors import PARTNER_WEIGHT, PARTNERS
from kb.embed import MINILM_ID, RELEVANCE_NAMES, SHORT_NAMES, USE_ID


def _search(row: dict, key: str, stat: str) -> float:
    return float(row["server"]["search_ms"][key][stat])


TARGETS = (  # the targets for the local store at 1,000,000 chunks: (label, value, limit, unit)
    ("search p50 without question embedding, first time", lambda r: _search(r, "no_embed", "p50"), 20, "ms"),
    ("search p99 without question embedding, first time", lambda r: _search(r, "no_embed", "p99"), 60, "ms"),
    (
        "search p50 without question embedding, repeated",
        lambda r: _search(r, "no_embed_repeat", "p50"),
        20,
        "ms",
    ),
    (
        "search p99 without question embedding, repeated",
        lambda r: _search(r, "no_embed_repeat", "p99"),
        60,
        "ms",
    ),
    ("recall@10, approximate vs exact", lambda r: r["server"]["recall_at_10"]["mean"], 0.95, ""),
    ("server RSS after the timed questions (VmRSS)", lambda r: _rss(r) / 1024, 6, "GB"),
    ("server peak RSS before the exact pass (VmHWM)", lambda r: _server_peak(r) / 1024, 6, "GB"),
    (
        "one-document upsert (writer open + upsert + publish)",
        lambda r: r["server"]["upsert"]["total_s"],
        5,
        "s",
    ),
    ("build, excluding embedding (upsert + publish)", lambda r: r["build"]["build_s"] / 60, 30, "min"),
)

TABLE_HEAD = (
    "| store | models | chunks | docs | units | search | build s | generate s | on disk | server RSS MiB (anon) | "
    "search p50 / p99 ms | + embedding p50 / p99 ms | recall@10 | 1-doc upsert s | reopen s |\n"
    "|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)
ALIASES = {model_id: alias for alias, model_id in (SHORT_NAMES | RELEVANCE_NAMES).items()}


def _rss(row: dict) -> float:
    searched = row["server"]["memory"]["searched"]
    return float(max(searched["rss_mb"], searched["tree_rss_mb"]))


def _server_peak(row: dict) -> float:
    searched = row["server"]["memory"]["searched"]
    return max(searched["hwm_mb"], searched["tree_rss_mb"])


def _size(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def row_line(row: dict) -> str:
    b, s = row["build"], row["server"]
    ms = s["search_ms"]
    searched = s["memory"]["searched"]
    rss = max(searched["rss_mb"], searched["tree_rss_mb"])
    mode = "exact scan" if s["exact_store"] else "approximate"
    models = "+".join(ALIASES.get(m, m) for m in row.get("models", [USE_ID, MINILM_ID]))
    return (
        f"| {row['store']} | {models} | {row['chunks']:,} | {b['documents']:,} | {b['units']:,} | {mode} | "
        f"{b['build_s']:,.1f} | {b['generate_s']:,.1f} | {_size(row['index_bytes']['allocated'])} | "
        f"{rss:,} ({searched.get('anon_mb', '–'):,}) | {ms['no_embed']['p50']:.1f} / {ms['no_embed']['p99']:.1f} | "
        f"{ms['with_embed']['p50']:.1f} / {ms['with_embed']['p99']:.1f} | {s['recall_at_10']['mean']:.3f} | "
        f"{s['upsert']['total_s']:.2f} | {s['upsert']['reopen_s']:.2f} |"
    )


def _targets(row: dict) -> list[str]:
    lines = [
        f"\n## Targets: {row['store']} store at {row['chunks']:,} chunks\n",
        "| target | limit | measured | met |",
        "|---|---:|---:|---|",
    ]
    for label, value, limit, unit in TARGETS:
        try:
            got = value(row)
        except KeyError:  # a row measured before that figure existed
            continue
        ok = got >= limit if "recall" in label else got <= limit
        lines.append(
            f"| {label} | {'≥' if 'recall' in label else '≤'} {limit} {unit} | {got:.3g} {unit} | {'✅' if ok else '❌'} |"
        )
    return lines


def _details(rows: list[dict]) -> list[str]:
    lines = [
        "\n## Details per run\n",
        "| store | chunks | date (UTC) | load avg (start of queries) | questions timed / exact | "
        "repeated search p50 / p99 ms | signals p50 ms | fuse+top-k p50 ms | "
        "embed p50 ms | exact search p50 ms | store open s | build peak RSS MiB | upsert: open writer / upsert / "
        "publish s | new text seen, found by search | wall min | commit (kb/ edited) |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---|",
    ]
    for r in rows:
        s, b, u = r["server"], r["build"], r["server"]["upsert"]
        st = s["search_ms"]["stages"]
        peak = max(b["memory"]["end"]["hwm_mb"], b["peak_tree_rss_mb"])
        lines.append(
            f"| {r['store']} | {r['chunks']:,} | {r['date']} | {', '.join(f'{x:.2f}' for x in s['load']['start'])} | "
            f"{s['search_ms']['no_embed']['n']} / {s['recall_at_10']['n']} | {_repeated(s)} | "
            f"{st['signals']['p50']:.1f} | {st['fuse_topk']['p50']:.1f} | {st['embed']['p50']:.1f} | "
            f"{s['recall_at_10']['exact_ms']['p50']:,.0f} | {s['open_s']:.2f} | {peak:,} | "
            f"{u['open_writer_s']:.2f} / {u['upsert_s']:.2f} / {u['publish_s']:.2f} | "
            f"{u['new_text_visible']}, {u['found_by_search']} | {r['wall_s'] / 60:.0f} | {_code(r)} |"
        )
    return lines


def _repeated(server: dict) -> str:
    again = server["search_ms"].get("no_embed_repeat")
    return f"{again['p50']:.1f} / {again['p99']:.1f}" if again else "–"


def _code(row: dict) -> str:
    code = row.get("code")
    if not code:
        return "–"
    edited = [line.split()[-1] for line in code["kb_changed"] if line.strip()]
    return f"{code['commit']} ({', '.join(edited) or 'none'})"


def _profile(row: dict) -> list[str]:
    lines = [
        f"\n## Where a search goes: {row['store']} store at {row['chunks']:,} chunks\n",
        "cProfile over the first questions, without question embedding; own time per question.\n",
        "| function | calls | own ms / question | cumulative ms / question |",
        "|---|---:|---:|---:|",
    ]
    for p in row["server"]["profile"]:
        lines.append(
            f"| `{p['function']}` | {p['calls']:,} | {p['own_ms_per_q']:.2f} | {p['cum_ms_per_q']:.2f} |"
        )
    return lines


def _stats(x: dict) -> str:
    return f"{x['mean']:.3f} / {x['p10']:.3f} / {x['p50']:.3f} / {x['p90']:.3f}"


def _method(method: dict) -> list[str]:
    s = method["sentences"]
    lines = [
        "\n## How the corpus is made\n",
        f"Text: {s['en']['distinct']:,} English and {s['zh']['distinct']:,} Chinese distinct sentences from corpus/ "
        "(through ingest's parsers), the SciFact abstracts and the XQuAD en/zh paragraphs, split by "
        "`kb.text.sentence_spans`. A document walks through source passages (consecutive sentences), in one "
        f"language (half the documents Chinese), 1-8 chunks of 1-5 sentences up to {CHUNK_CHARS['en']} "
        f"(English) / {CHUNK_CHARS['zh']} (Chinese) characters; 80% articles, 12% FAQ, 8% thread comments. "
        "Answer units are `sentence_spans` of each chunk, as ingest makes them. Chinese sources are small, so "
        "Chinese sentences recur far more often than in a real corpus (about 900 times each in a million "
        "chunks; English ones about 20 times).\n",
        f"Vectors: a pool of {s['en']['pool'] + s['zh']['pool']:,} real sentences ({s['zh']['pool']:,} Chinese: "
        "all of them; every corpus/ and XQuAD English one; two per SciFact abstract) embedded by the real "
        "models. Each other sentence's home is a pool sentence of its own passage. A unit's vector per model is "
        f"normalise(home + w₁·p₁ [+ w₂·p₂] + s·ε): 1-2 partners p among the home's {PARTNERS} nearest same-language "
        f"pool neighbours (by USE), w ~ U(0, {PARTNER_WEIGHT}), the same partners and weights in both models; "
        "ε Gaussian with the pool's covariance; s fitted per model and language so that the median "
        "nearest-neighbour cosine of as many synthetic units (drawn as the corpus draws them, repeats included) "
        "equals the real pool's. A chunk's vector is normalise(mean of its unit vectors + t·ε), t fitted so "
        "that chunks' median nearest-neighbour cosine equals that of generated chunks embedded for real "
        "(chunks sharing no sentence, as a real corpus would not). Every unit gets its own draw: a repeated "
        "sentence stands for a new one. Questions: 100 golden questions and 100 pool sentences that occur in "
        "the first documents (50 per language each), embedded for real; recall@10 uses the first 100.\n",
        "Nearest-neighbour cosine, mean / p10 / p50 / p90 (each set against itself, same count):\n",
        "| level | lang | model | n | real | synthetic | noise scale |",
        "|---|---|---|---:|---|---|---:|",
    ]
    for level in ("units", "chunks"):
        for lang, models in method[level].items():
            for model, x in models.items():
                lines.append(
                    f"| {level} | {lang} | {model} | {x['n']:,} | {_stats(x['nn_cosine_real'])} | "
                    f"{_stats(x['nn_cosine_synthetic'])} | {x['noise_scale']:.3f} |"
                )
    lines.append("\nChunk vector vs the mean of its unit vectors (cosine, mean / p10 / p50 / p90):\n")
    lines += ["| lang | model | real | synthetic |", "|---|---|---|---|"]
    for lang, models in method["chunks"].items():
        for model, x in models.items():
            lines.append(
                f"| {lang} | {model} | {_stats(x['cosine_to_unit_mean_real'])} | "
                f"{_stats(x['cosine_to_unit_mean_synthetic'])} |"
            )
    return lines


def markdown(results: dict) -> str:
    rows = results["runs"]
    last = rows[-1]["machine"]
    lines = [
        "# Scale benchmark\n",
        "Regenerate with " + " and ".join(f"`{c}`" for c in results["commands"]) + " (benchmarks/scale.py; "
        "real text from corpus/ and ../shared/bench, synthetic vectors fitted to the real embedders', "
        "embeddings cached under `~/.cache/kbq-bench/scale`).",
        "Models: use = use-multilingual-v3 and minilm = all-MiniLM-L6-v2 retrieve; e5 = the relevance model "
        "(multilingual-e5-small), whose vectors the index holds for answering and search never reads.",
        f"Machine: {last['nproc']} CPUs ({last['cpu']}), {last['memory_gb']} GB RAM, Python {last['python']}; "
        "a shared machine, so each run records its load average.\n",
        "Build = the store's upsert + publish (generating text and vectors, which stands in for parsing and "
        "embedding, is timed apart). On disk = allocated bytes of the index folder (versions and segments; "
        "for Milvus Lite its .db). Server RSS = VmRSS of a fresh process that loaded the models and the store "
        "as a server does and ran the timed questions (with its children, if any); anon = its RssAnon, the "
        "rest being resident pages of memory-mapped index files (the local store maps only its postings and "
        "reads vectors with pread since 2026-11-29; before, mapped vector pages made most of it); "
        "peak = VmHWM. "
        "Search = `Retriever.search(k=10)` over 200 questions after 10 warm-up ones, without question "
        "embedding (vectors given): the first time each is asked since the store opened (its rows may have "
        "to be read from disk), and repeated (details); with embedding: embedding plus a repeated search. Recall@10 = overlap of the default search's top 10 "
        "with `exact=True` (every row scored), 100 questions (fewer where the details say so); for Milvus "
        "Lite, which hands vectors over too slowly to score every row, with `exact=True` over a local store "
        "built from the same records (the stores score alike: tests/kb/test_store_contract.py). 1-doc upsert = writer open + upsert + publish of one "
        "changed document under the writer lock; reopen = opening the new version beside the old, as a "
        "reloading server does.\n",
        TABLE_HEAD,
        *[row_line(r) for r in rows],
    ]
    for r in rows:
        if r["store"] == "local" and r["chunks"] >= 1_000_000:
            lines += _targets(r)
    lines += _details(rows)
    largest = max(rows, key=lambda r: (r["store"] == "local", r["chunks"]))
    lines += _profile(largest)
    lines += _method(results["method"])
    return "\n".join(lines) + "\n"
