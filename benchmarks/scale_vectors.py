"""Vectors for ``python -m benchmarks.scale`` whose distribution matches the real embedders'.

A pool of real sentences (every Chinese one, every corpus/ and XQuAD English one, two per SciFact
abstract) is embedded once with the real models and cached under ~/.cache/kbq-bench/scale. Every other
sentence gets a "home" in the pool: a pool sentence of its own passage when there is one, else a random
one of its language. A generated answer unit's vector, per model, is

    normalise(home + w1·partner1 [+ w2·partner2] + s·noise)

with 1-2 partners among the home's 10 nearest pool neighbours of the same language (by USE cosine, the
same partners and weights w ~ U(0, 0.5) for both models) and noise drawn from a Gaussian with the pool's
own covariance. ``s`` is fitted per model and language so that the median nearest-neighbour cosine of
synthetic units equals the real pool's at the same count, even though the corpus repeats sentences.
A chunk's vector is its units' normalised mean plus noise of scale ``t``, fitted so that its cosine to
that mean matches what real chunk embeddings show (measured on generated chunks embedded for real).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from benchmarks.scale_text import LANGS, GenDoc, Sentences
from kb.embed import Embedder

PARTNERS = 10  # candidate partners per pool sentence: its nearest pool neighbours of the same language
PARTNER_WEIGHT = 0.5  # partner weights ~ U(0, this)
Embed = Callable[[Embedder, Sequence[str], str], np.ndarray]  # (embedder, texts, cache key) -> vectors


def normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def nn_cosines(x: np.ndarray, block: int = 2048) -> np.ndarray:
    """Each row's highest cosine to another row (rows are unit vectors)."""
    out = np.empty(len(x), np.float32)
    for i in range(0, len(x), block):
        sims = x[i : i + block] @ x.T
        np.fill_diagonal(sims[:, i : i + block], -np.inf)
        out[i : i + block] = sims.max(axis=1)
    return out


def summary(values: np.ndarray) -> dict[str, float]:
    p10, p50, p90 = np.percentile(values, [10, 50, 90])
    return {"mean": round(float(values.mean()), 4), "p10": round(float(p10), 4)} | {
        "p50": round(float(p50), 4),
        "p90": round(float(p90), 4),
    }


def pool_ids(sentences: Sentences, per_abstract: int, seed: int) -> np.ndarray:
    """The pool: every sentence not from SciFact, plus ``per_abstract`` sentences of each abstract."""
    rng = np.random.default_rng([seed, 7])
    chosen = set(np.flatnonzero(sentences.source != "scifact").tolist())
    for run in sentences.passages["en"]:
        scifact = [s for s in run.tolist() if sentences.source[s] == "scifact"]
        if scifact:
            chosen.update(rng.choice(scifact, min(per_abstract, len(scifact)), replace=False).tolist())
    return np.array(sorted(chosen), np.int64)


@dataclass
class Synthesizer:
    """Draws unit and chunk vectors for generated documents (see the module docstring)."""

    sentences: Sentences
    pool: np.ndarray  # sentence ids
    vectors: dict[str, np.ndarray]  # model id -> (pool, dim) real document embeddings
    home: np.ndarray = field(init=False)  # sentence id -> pool index
    partners: np.ndarray = field(init=False)  # pool index -> (PARTNERS,) pool indices
    factor: dict[str, np.ndarray] = field(init=False)  # model id -> (dim, dim): noise = z @ factor
    unit_scale: dict[tuple[str, str], float] = field(default_factory=dict)  # (model, lang) -> s
    chunk_scale: dict[tuple[str, str], float] = field(default_factory=dict)  # (model, lang) -> t

    def __post_init__(self) -> None:
        self.home = self._homes(np.random.default_rng(11))
        self.partners = self._partners(next(iter(self.vectors.values())))
        self.factor = {m: _cov_factor(v) for m, v in self.vectors.items()}

    def _homes(self, rng: np.random.Generator) -> np.ndarray:
        s = self.sentences
        position = np.full(len(s.texts), -1, np.int64)
        position[self.pool] = np.arange(len(self.pool))
        home = position.copy()
        for lang in LANGS:
            in_lang = np.flatnonzero(s.lang[self.pool] == lang)
            for run in s.passages[lang]:
                own = position[run][position[run] >= 0]
                todo = run[home[run] < 0]
                home[todo] = rng.choice(own if len(own) else in_lang, len(todo))
            left = np.flatnonzero((home < 0) & (s.lang == lang))
            home[left] = rng.choice(in_lang, len(left))
        return home

    def _partners(self, vectors: np.ndarray) -> np.ndarray:
        langs = self.sentences.lang[self.pool]
        out = np.zeros((len(self.pool), PARTNERS), np.int64)
        for lang in LANGS:
            members = np.flatnonzero(langs == lang)
            x = vectors[members]
            for i in range(0, len(members), 2048):
                sims = x[i : i + 2048] @ x.T
                np.fill_diagonal(sims[:, i : i + 2048], -np.inf)
                top = np.argpartition(-sims, PARTNERS, axis=1)[:, :PARTNERS]
                out[members[i : i + 2048]] = members[top]
        return out

    def mixes(self, homes: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """The noiseless part of each unit's vector per model (same partners and weights in every model)."""
        n = len(homes)
        picks = self.partners[homes[:, None], rng.integers(0, PARTNERS, (n, 2))]
        weights = rng.uniform(0, PARTNER_WEIGHT, (n, 2)).astype(np.float32)
        weights[:, 1] *= rng.random(n) < 0.5  # one or two partners
        return {
            m: v[homes] + weights[:, :1] * v[picks[:, 0]] + weights[:, 1:] * v[picks[:, 1]]
            for m, v in self.vectors.items()
        }

    def noise(self, model_id: str, n: int, rng: np.random.Generator) -> np.ndarray:
        z = rng.standard_normal((n, self.factor[model_id].shape[0]), dtype=np.float32)
        return z @ self.factor[model_id]

    def unit_vectors(
        self, sentence_ids: np.ndarray, langs: np.ndarray, rng: np.random.Generator
    ) -> dict[str, np.ndarray]:
        """Vectors of units standing for these sentences (-1: a random sentence of the unit's language)."""
        homes = self.home[np.maximum(sentence_ids, 0)]
        for lang in LANGS:  # a unit that is not one source sentence gets a random home of its language
            loose = np.flatnonzero((sentence_ids < 0) & (langs == lang))
            homes[loose] = rng.choice(np.flatnonzero(self.sentences.lang[self.pool] == lang), len(loose))
        mixes = self.mixes(homes, rng)
        scale = {m: np.array([self.unit_scale[(m, lang)] for lang in LANGS], np.float32) for m in mixes}
        which = (langs == "zh").astype(np.int64)
        return {
            m: normalise(x + scale[m][which][:, None] * self.noise(m, len(x), rng)) for m, x in mixes.items()
        }

    def chunk_vectors(
        self,
        units: Mapping[str, np.ndarray],
        unit_chunk: np.ndarray,
        langs: np.ndarray,
        rng: np.random.Generator,
    ) -> dict[str, np.ndarray]:
        """Each chunk's vector: its units' normalised mean, perturbed (``unit_chunk`` ascending)."""
        out = {}
        which = (langs == "zh").astype(np.int64)
        for m, x in units.items():
            means = normalise(segment_means(x, unit_chunk, len(langs)))
            scale = np.array([self.chunk_scale[(m, lang)] for lang in LANGS], np.float32)[which]
            out[m] = normalise(means + scale[:, None] * self.noise(m, len(means), rng))
        return out

    def for_docs(self, docs: Sequence[GenDoc], rng: np.random.Generator) -> tuple[dict, dict]:
        """(unit vectors, chunk vectors) of a batch of documents, rows in batch order."""
        layout = Layout.of(docs)
        units = self.unit_vectors(layout.unit_sentence, layout.unit_lang, rng)
        return units, self.chunk_vectors(units, layout.unit_chunk, layout.chunk_lang, rng)


@dataclass(frozen=True)
class Layout:
    """The units and chunks of a batch of documents, flattened in batch order."""

    unit_sentence: np.ndarray
    unit_lang: np.ndarray
    unit_chunk: np.ndarray  # the chunk row (within the batch) of each unit, ascending
    chunk_lang: np.ndarray

    @classmethod
    def of(cls, docs: Sequence[GenDoc]) -> Layout:
        offsets = np.cumsum([0] + [len(d.chunks) for d in docs])
        return cls(
            np.concatenate([d.unit_sentence for d in docs]),
            np.concatenate([np.full(len(d.units), d.document.lang) for d in docs]),
            np.concatenate(
                [offsets[i] + np.array([u[0] for u in d.units], np.int64) for i, d in enumerate(docs)]
            ),
            np.concatenate([np.full(len(d.chunks), d.document.lang) for d in docs]),
        )


def segment_means(x: np.ndarray, groups: np.ndarray, n: int) -> np.ndarray:
    """Mean row of each group 0..n-1 (``groups`` ascending; every group has a row)."""
    counts = np.bincount(groups, minlength=n)
    if len(counts) != n or not counts.all():
        raise ValueError("every chunk needs at least one answer unit")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return np.add.reduceat(x, starts, axis=0) / counts[:, None].astype(np.float32)


def _cov_factor(vectors: np.ndarray) -> np.ndarray:
    """F with Fᵀ F = the pool's covariance, so z @ F is Gaussian noise shaped like the real vectors."""
    centred = vectors - vectors.mean(axis=0)
    values, vecs = np.linalg.eigh(centred.T @ centred / max(len(vectors) - 1, 1))
    return (vecs * np.sqrt(np.clip(values, 0, None))).T.astype(np.float32)


def fit_scale(measure: Callable[[float], float], target: float, high: float = 4.0, steps: int = 18) -> float:
    """The scale whose ``measure`` (decreasing in it) equals ``target``, by bisection."""
    low = 0.0
    for _ in range(steps):
        mid = (low + high) / 2
        low, high = (mid, high) if measure(mid) > target else (low, mid)
    return (low + high) / 2
