"""The workload of ``python -m benchmarks.scale``: generated documents, their vectors, the questions.

``prepare`` embeds the real sentence pool, a sample of generated chunks and the questions with the real
embedders (cached under ~/.cache/kbq-bench/scale, never in the repository), fits the synthetic vectors'
noise to them (benchmarks/scale_vectors.py) and states the method with the cosine statistics it reached.
``records`` then streams kb.store.DocumentRecord batches for any corpus size.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from benchmarks.scale_text import LANGS, DocumentMaker, GenDoc, Sentences, load_sentences
from benchmarks.scale_vectors import (
    Layout,
    Synthesizer,
    fit_scale,
    nn_cosines,
    normalise,
    pool_ids,
    segment_means,
    summary,
)
from evals.embed_cache import DEFAULT_CACHE, Cache
from evals.golden import load_golden
from kb.embed import Embedder
from kb.store import DocumentRecord, file_slug, indexed_text
from kb.tuning import source_digest
from kb.types import Chunk, Document

CACHE = DEFAULT_CACHE / "scale"
GENERATOR = [Path(__file__).with_name(f"scale_{part}.py") for part in ("text", "vectors", "data")]
CALIBRATION_UNITS = 6000  # per language at most: real pool sentences vs as many synthetic units
CALIBRATION_CHUNKS = 1500  # per language: generated chunks embedded for real
QUERIES_PER_KIND = 50  # per language, golden questions and sentences of generated documents each
QUERY_DOCS = 2000  # sentence questions come from the first documents, which every size holds


@dataclass(frozen=True)
class Query:
    text: str
    lang: str
    origin: str  # 'golden' or 'sentence'
    vectors: dict[str, np.ndarray]


@dataclass
class Workload:
    maker: DocumentMaker
    synth: Synthesizer
    queries: list[Query]
    method: dict


def prepare(
    embedders: Sequence[Embedder],
    seed: int,
    zh_share: float,
    log: Callable[[str], None] = print,
    with_queries: bool = True,
) -> Workload:
    """Everything a run needs besides the store: deterministic from ``seed``; reruns read the cache
    (embeddings, and the fitted scales keyed by the generator's own code)."""
    cache = Cache(CACHE, log=log)
    sentences = load_sentences()
    maker = DocumentMaker(sentences, seed, zh_share)
    pool = pool_ids(sentences, per_abstract=2, seed=seed)
    texts = [sentences.texts[i] for i in pool]
    vectors = {e.model_id: cache.embed(e, texts, "scale-pool") for e in embedders}
    synth = Synthesizer(sentences, pool, vectors)
    key = hashlib.sha256(json.dumps([seed, zh_share, list(vectors), source_digest(*GENERATOR)]).encode())
    fitted = CACHE / f"fit-{key.hexdigest()[:16]}.json"  # per seed, mix, models and generator code
    if fitted.exists():
        saved = json.loads(fitted.read_text(encoding="utf-8"))
        method = saved["method"]
        synth.unit_scale = {(m, lang): s for m, lang, s in saved["unit_scale"]}
        synth.chunk_scale = {(m, lang): s for m, lang, s in saved["chunk_scale"]}
    else:
        log(f"fitting synthetic vectors to {len(pool)} real pool sentences")
        method = {"sentences": _sentence_stats(sentences, pool), "units": {}, "chunks": {}}
        for lang in LANGS:
            method["units"][lang] = _fit_units(synth, lang, np.random.default_rng([seed, 21]))
        method["chunks"] = _fit_chunks(synth, maker, embedders, cache, np.random.default_rng([seed, 22]))
        saved = {
            "method": method,
            "unit_scale": [[m, lang, s] for (m, lang), s in synth.unit_scale.items()],
            "chunk_scale": [[m, lang, s] for (m, lang), s in synth.chunk_scale.items()],
        }
        fitted.write_text(json.dumps(saved, indent=1), encoding="utf-8")
    queries = (
        _queries(synth, maker, embedders, cache, np.random.default_rng([seed, 23])) if with_queries else []
    )
    return Workload(maker, synth, queries, method)


def records(work: Workload, n_chunks: int, batch_docs: int = 2000) -> Iterator[list[DocumentRecord]]:
    """The corpus of ``n_chunks`` chunks as batches of records, one batch in memory at a time."""
    for b, docs in enumerate(work.maker.batches(n_chunks, batch_docs)):
        yield to_records(work.synth, docs, np.random.default_rng([work.maker.seed, 1, b]))


def changed_record(work: Workload, i: int) -> DocumentRecord:
    """Document ``i`` with new text and vectors (same id, language, kind and chunk count)."""
    doc = work.maker.make(i, variant=1)
    return to_records(work.synth, [doc], np.random.default_rng([work.maker.seed, 2, i]))[0]


def to_records(synth: Synthesizer, docs: Sequence[GenDoc], rng: np.random.Generator) -> list[DocumentRecord]:
    units, chunks = synth.for_docs(docs, rng)
    out, u, c = [], 0, 0
    for d in docs:
        nu, nc = len(d.units), len(d.chunks)
        out.append(
            DocumentRecord(
                d.document,
                d.chunks,
                d.digest,
                d.units,
                {m: v[c : c + nc] for m, v in chunks.items()},
                {m: v[u : u + nu] for m, v in units.items()},
            )
        )
        u, c = u + nu, c + nc
    return out


def _sentence_stats(sentences: Sentences, pool: np.ndarray) -> dict:
    return {
        lang: {
            "distinct": int((sentences.lang == lang).sum()),
            "pool": int((sentences.lang[pool] == lang).sum()),
            "passages": len(sentences.passages[lang]),
        }
        for lang in LANGS
    }


def _fit_units(synth: Synthesizer, lang: str, rng: np.random.Generator) -> dict:
    """Per model: the noise scale s at which synthetic units' nearest-neighbour cosines match the pool's."""
    members = np.flatnonzero(synth.sentences.lang[synth.pool] == lang)
    n = min(len(members), CALIBRATION_UNITS)
    real_sample = rng.choice(members, n, replace=False)
    drawn = rng.choice(synth.sentences.ids(lang), n)  # as the generator draws: sentences repeat
    mixes = synth.mixes(synth.home[drawn], rng)
    out = {}
    for model_id, mix in mixes.items():
        real = nn_cosines(synth.vectors[model_id][real_sample])
        noise = synth.noise(model_id, n, rng)

        scale = fit_scale(partial(_median_nn, mix, noise), float(np.median(real)))
        synth.unit_scale[(model_id, lang)] = scale
        synthetic = normalise(mix + scale * noise)
        own = synth.vectors[model_id][synth.home[drawn]]
        out[model_id] = {
            "n": n,
            "noise_scale": round(scale, 4),
            "nn_cosine_real": summary(real),
            "nn_cosine_synthetic": summary(nn_cosines(synthetic)),
            "cosine_to_home": summary(np.einsum("ij,ij->i", synthetic, own)),
        }
    return out


def _median_nn(mix: np.ndarray, noise: np.ndarray, s: float) -> float:
    return float(np.median(nn_cosines(normalise(mix + s * noise))))


def _calibration_docs(maker: DocumentMaker) -> list[GenDoc]:
    docs: list[GenDoc] = []
    count = dict.fromkeys(LANGS, 0)
    i = 0
    while min(count.values()) < CALIBRATION_CHUNKS:
        doc = maker.make(10_000_000 + i)  # beyond any corpus: embedded for real, never indexed
        if count[doc.document.lang] < CALIBRATION_CHUNKS:
            docs.append(doc)
            count[doc.document.lang] += len(doc.chunks)
        i += 1
    return docs


def _fit_chunks(
    synth: Synthesizer,
    maker: DocumentMaker,
    embedders: Sequence[Embedder],
    cache: Cache,
    rng: np.random.Generator,
) -> dict:
    """Per model and language: the chunk noise scale t at which synthetic chunks' nearest-neighbour
    cosines match those of generated chunks embedded for real."""
    docs = _calibration_docs(maker)
    chunk_texts = [indexed_text(c) for d in docs for c in d.chunks]
    unit_texts = [d.document.text[a:b] for d in docs for _, a, b in d.units]
    layout = Layout.of(docs)
    units = synth.unit_vectors(layout.unit_sentence, layout.unit_lang, rng)
    langs, n = layout.chunk_lang, len(layout.chunk_lang)
    apart = _apart(layout)
    out: dict = {lang: {} for lang in LANGS}
    for e in embedders:
        m = e.model_id
        real = cache.embed(e, chunk_texts, "scale-chunks")
        real_means = normalise(
            segment_means(cache.embed(e, unit_texts, "scale-chunk-units"), layout.unit_chunk, n)
        )
        means = normalise(segment_means(units[m], layout.unit_chunk, n))
        noise = synth.noise(m, n, rng)
        for lang in LANGS:
            rows = (langs == lang) & apart
            target = nn_cosines(real[rows])
            scale = synth.chunk_scale[(m, lang)] = fit_scale(
                partial(_median_nn, means[rows], noise[rows]), float(np.median(target))
            )
            synthetic = normalise(means[rows] + scale * noise[rows])
            out[lang][m] = {
                "n": int(rows.sum()),
                "noise_scale": round(scale, 4),
                "nn_cosine_real": summary(target),
                "nn_cosine_synthetic": summary(nn_cosines(synthetic)),
                "cosine_to_unit_mean_real": summary(np.einsum("ij,ij->i", real[rows], real_means[rows])),
                "cosine_to_unit_mean_synthetic": summary(np.einsum("ij,ij->i", synthetic, means[rows])),
            }
    return out


def _apart(layout: Layout) -> np.ndarray:
    """Chunks that share no source sentence with an earlier one: recombined text repeats sentences
    (Chinese has only ~1,700), which a real corpus of this size would not, and a shared sentence would
    make real chunks look closer to each other than they are."""
    seen: set[int] = set()
    keep = np.zeros(len(layout.chunk_lang), bool)
    starts = np.searchsorted(layout.unit_chunk, np.arange(len(keep) + 1))
    for row in range(len(keep)):
        ids = {int(i) for i in layout.unit_sentence[starts[row] : starts[row + 1]] if i >= 0}
        if not ids & seen:
            keep[row] = True
        seen |= ids
    return keep


def _queries(
    synth: Synthesizer,
    maker: DocumentMaker,
    embedders: Sequence[Embedder],
    cache: Cache,
    rng: np.random.Generator,
) -> list[Query]:
    """Golden questions and sentences of the first generated documents, shuffled. A sentence question is a
    pool sentence, whose units' vectors derive from its own real embedding, so its dense and lexical
    signals agree as they would in a real corpus."""
    in_pool = np.zeros(len(synth.sentences.texts), bool)
    in_pool[synth.pool] = True
    golden = load_golden()
    picked: list[tuple[str, str, str]] = []
    for lang in LANGS:
        items = [g.question for g in golden if g.lang == lang]
        picked += [(q, lang, "golden") for q in rng.choice(items, QUERIES_PER_KIND, replace=False).tolist()]
    for lang in LANGS:
        seen: set[str] = set()
        for i in range(QUERY_DOCS):
            doc = maker.make(i)
            if doc.document.lang == lang:
                seen.update(
                    doc.document.text[a:b]
                    for (_, a, b), sid in zip(doc.units, doc.unit_sentence, strict=True)
                    if b - a >= 20 and sid >= 0 and in_pool[sid]
                )
        candidates = sorted(seen)
        picked += [
            (q, lang, "sentence") for q in rng.choice(candidates, QUERIES_PER_KIND, replace=False).tolist()
        ]
    order = rng.permutation(len(picked))
    picked = [picked[i] for i in order]
    texts = [q for q, _, _ in picked]
    vectors = {e.model_id: cache.embed(e, texts, "scale-queries", queries=True) for e in embedders}
    return [
        Query(q, lang, origin, {m: v[i] for m, v in vectors.items()})
        for i, (q, lang, origin) in enumerate(picked)
    ]


def save_queries(queries: Sequence[Query], path: Path) -> None:
    """Questions and their vectors as JSON and .npy beside it (for the query process)."""
    path.write_text(
        json.dumps([[q.text, q.lang, q.origin] for q in queries], ensure_ascii=False), encoding="utf-8"
    )
    for m in queries[0].vectors if queries else ():
        np.save(path.with_name(f"{path.stem}-{file_slug(m)}.npy"), np.stack([q.vectors[m] for q in queries]))


def load_queries(path: Path, model_ids: Sequence[str]) -> list[Query]:
    items = json.loads(path.read_text(encoding="utf-8"))
    vectors = {m: np.load(path.with_name(f"{path.stem}-{file_slug(m)}.npy")) for m in model_ids}
    return [
        Query(t, lang, origin, {m: v[i] for m, v in vectors.items()})
        for i, (t, lang, origin) in enumerate(items)
    ]


def save_record(record: DocumentRecord, path: Path) -> None:
    """One record as JSON plus an .npz of its vectors (no pickle)."""
    models = list(record.vectors)
    data = {
        "document": record.document.to_dict(),
        "chunks": [c.to_dict() for c in record.chunks],
        "digest": record.digest,
        "units": record.units,
        "models": models,
    }
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    arrays = {f"c{i}": record.vectors[m] for i, m in enumerate(models)}
    arrays |= {f"u{i}": record.unit_vectors[m] for i, m in enumerate(models)}
    np.savez(path.with_suffix(".npz"), **arrays)  # type: ignore[arg-type]


def load_record(path: Path) -> DocumentRecord:
    data = json.loads(path.read_text(encoding="utf-8"))
    arrays = np.load(path.with_suffix(".npz"), allow_pickle=False)
    models = data["models"]
    return DocumentRecord(
        Document(**data["document"]),
        [Chunk.from_dict(c) for c in data["chunks"]],
        data["digest"],
        [tuple(u) for u in data["units"]],
        {m: arrays[f"c{i}"] for i, m in enumerate(models)},
        {m: arrays[f"u{i}"] for i, m in enumerate(models)},
    )
