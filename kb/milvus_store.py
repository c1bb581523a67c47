"""The Milvus store (``KB_STORE=milvus``, kb/store.py), read side: one published version, read-only. The
collections and how versions live in them: kb/milvus_schema.py; writing: kb/milvus_writer.py and
kb/milvus_versions.py."""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kb.lexical import idf, term_counts
from kb.store import (
    IndexUnavailable,
    Scored,
    SentenceRows,
    StoreBase,
    check_models,
)
from kb.tuning import INDEX, RETRIEVAL
from kb.types import Chunk, Document

if TYPE_CHECKING:
    from kb.config import Settings

from kb.milvus_rows import (
    _best,
    _catalog,
    _concat,
    _Postings,
    _sentence_rows,
    _take,
    _unit,
)
from kb.milvus_schema import (
    TOP_MAX,
    VECTOR_WINDOW,
    WINDOW,
    _connect,
    _live,
    _load,
    _meta,
    _milvus,
    _Names,
    _scan,
    _uri,
    _where_in,
    chunk_fields,
    dense_fields,
    stated_terms,
    term_dim,
)


class MilvusStore(StoreBase):
    """One published version in Milvus, read-only (see ``kb.store.Store``)."""

    def __init__(self, client: Any, names: _Names, manifest: dict) -> None:
        self.client = client
        self._manifest = manifest
        meta = _milvus(manifest)
        self.number: int = meta["number"]
        self.live = _live(self.number)
        self.col = names.of(meta["generation"])
        _load(client, self.col.values())
        self._dims = {e["id"]: int(e["dim"]) for e in manifest["embedders"]}
        self.field = dense_fields(manifest["embedders"])  # sentences: every model's vector
        self.chunk_field = chunk_fields(manifest)  # chunks: only models with chunk vectors
        lexical = manifest["settings"]["lexical"]
        self.cjk, self.k1, self.b = lexical["cjk"], float(lexical["k1"]), float(lexical["b"])
        self._exact = manifest["counts"]["chunks"] < INDEX.store.exact_below
        self.catalog = _catalog(client, self.col["documents"], self.number, meta["next"]["doc"])
        self._terms: dict[int, tuple[int, int]] = {}  # dim -> (df, stated), read as asked (not exact)
        self._stated: frozenset[str] | None = None  # read from the chunks when first asked (exact)
        self._lock = threading.Lock()
        self._read_chunk = functools.lru_cache(maxsize=4096)(self._fetch_chunk)  # a version never changes
        self._load_rows()

    @classmethod
    def open(cls, settings: Settings, model_ids: Sequence[str] | None = None) -> MilvusStore:
        names = _Names(settings.milvus_collection)
        uri = _uri(settings)
        where = f"{uri} (collections {names.prefix}_*)"
        if uri.endswith(".db") and not Path(uri).exists():
            raise IndexUnavailable(
                f"no index in Milvus Lite at {uri}: run `kbq ingest` to build one from the corpus"
            )
        client = _connect(settings)
        try:
            versions, _ = _meta(client, names)
            if not versions:
                raise IndexUnavailable(
                    f"no index in Milvus at {where}: run `kbq ingest` to build one from the corpus"
                )
            manifest = versions[-1]["manifest"]
            check_models(manifest, where, model_ids)
            return cls(client, names, manifest)
        except IndexUnavailable:
            client.close()
            raise
        except Exception as exc:
            client.close()
            raise IndexUnavailable(
                f"index in Milvus at {where} is incomplete ({type(exc).__name__}: {str(exc)[:120]}): "
                "run `kbq ingest --rebuild`"
            ) from None

    def _load_rows(self) -> None:
        """The live rows' languages, kinds and sentence ranges; an exact store also every vector and weight."""
        columns = ["row", "lang", "kind", "first_sid", "n_sents"]
        if self._exact:
            columns += ["chunk", "length", "lexical", *self.chunk_field.values()]
        end = _milvus(self._manifest)["next"]["row"]
        rows, chunks, lexical = [], [], []
        lengths, vectors = [], {m: [] for m in self.chunk_field}  # type: ignore[var-annotated]
        window = VECTOR_WINDOW if self._exact else WINDOW
        for found in _scan(self.client, self.col["chunks"], "row", self.live, columns, end, window=window):
            rows += [(r["row"], r["lang"], r["kind"], r["first_sid"], r["n_sents"]) for r in found]
            if self._exact:  # each window's vectors to numpy at once: Python floats take 8x the memory
                chunks += [r["chunk"] for r in found]
                lexical += [r["lexical"] for r in found]
                lengths += [r["length"] for r in found]
                for m, f in self.chunk_field.items():
                    vectors[m].append(np.array([r[f] for r in found], np.float32).reshape(-1, self._dims[m]))
        self._rows = np.array([r[0] for r in rows], np.int64)
        self._langs = np.array([r[1] for r in rows], dtype=str)
        self._kinds = np.array([r[2] for r in rows], dtype=str)
        self._first_sid = np.array([r[3] for r in rows], np.int64)
        self._n_sents = np.array([r[4] for r in rows], np.int64)
        counts = self._manifest["counts"]
        if len(self._rows) != counts["chunks"] or len(self.catalog) != counts["documents"]:
            raise ValueError("the live chunks or documents differ from the manifest's counts")
        if not self._exact:
            return
        self._chunks = chunks
        self._vectors = {
            m: _unit(np.vstack(v) if v else np.zeros((0, self._dims[m]), np.float32))
            for m, v in vectors.items()
        }
        built = self._manifest.get("avgdl")
        self._postings = _Postings(lexical, np.array(lengths, np.float32), built, self.k1, self.b)
        self._all_sentences = self._scan_sentences()

    def _scan_sentences(self) -> SentenceRows:
        """Every live row's sentences: a scan of the id range they span, dead rows' dropped."""
        if not len(self._rows):
            return SentenceRows.empty(self._dims)
        columns = ["sid", "row", "start", "end", *self.field.values()]
        start, end = int(self._first_sid.min()), int(_milvus(self._manifest)["next"]["sid"])
        parts = []
        for found in _scan(self.client, self.col["sentences"], "sid", "", columns, end, start, VECTOR_WINDOW):
            part = _sentence_rows(found, self.field, self._dims)
            keep = np.isin(part.row, self._rows)
            parts.append(_take(part, np.flatnonzero(keep)))
        every = _concat(parts, self._dims)
        if len(every) != int(self._n_sents.sum()):
            raise ValueError(f"{int(self._n_sents.sum()) - len(every)} sentences of live rows are missing")
        return every

    # ------------------------------------------------------------ what it holds

    def _positions(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, np.int64)
        at = np.minimum(np.searchsorted(self._rows, rows), max(len(self._rows) - 1, 0))
        if len(rows) and (not len(self._rows) or not np.array_equal(self._rows[at], rows)):
            raise KeyError(
                f"no live chunk at rows {sorted(set(rows.tolist()) - set(self._rows.tolist()))[:5]}"
            )
        return at

    def langs(self, rows: np.ndarray) -> np.ndarray:
        return self._langs[self._positions(rows)]

    def kinds(self, rows: np.ndarray) -> np.ndarray:
        return self._kinds[self._positions(rows)]

    def chunk(self, row: int) -> Chunk:
        at = int(self._positions(np.array([row]))[0])
        if self._exact:
            return Chunk.from_dict(json.loads(self._chunks[at]))
        return self._read_chunk(int(row))

    def _fetch_chunk(self, row: int) -> Chunk:
        (found,) = _where_in(self.client, self.col["chunks"], "row", [row], ["chunk"])
        return Chunk.from_dict(json.loads(found["chunk"]))

    def document(self, doc_id: str) -> Document | None:
        entry = self.catalog.get(doc_id)
        if entry is None:
            return None
        parts = range(entry.part, entry.part + entry.pieces)
        pieces = _where_in(self.client, self.col["documents"], "part", parts, ["piece", "body"])
        return Document(**json.loads("".join(p["body"] for p in sorted(pieces, key=lambda p: p["piece"]))))

    def document_ids(self) -> list[str]:
        return sorted(self.catalog)

    def digests(self) -> dict[str, str]:
        return {d: e.digest for d, e in self.catalog.items()}

    def document_rows(self, doc_id: str) -> np.ndarray:
        entry = self.catalog.get(doc_id)
        if entry is None:
            return np.zeros(0, np.int64)
        return np.arange(entry.first_row, entry.first_row + entry.n_chunks, dtype=np.int64)

    # ------------------------------------------------------------ dense

    def dense_search(self, model_id: str, vector: np.ndarray, k: int) -> Scored:
        self._with_chunks(model_id)
        query = _unit(np.asarray(vector, np.float32).reshape(1, -1))[0]
        if self._exact:
            return _best(self._rows, self._vectors[model_id] @ query, k)
        hits = self.client.search(
            self.col["chunks"],
            data=[query.tolist()],
            anns_field=self.chunk_field[model_id],
            limit=max(1, min(k, TOP_MAX)),
            filter=self.live,
            search_params={"metric_type": "COSINE", "params": {"nprobe": RETRIEVAL.nprobe}},
            output_fields=["row"],
        )[0]
        rows = np.array([h["row"] for h in hits], np.int64)
        return _best(rows, np.array([h["distance"] for h in hits], np.float32), k)

    def dense_scores(self, model_id: str, vector: np.ndarray, rows: np.ndarray) -> np.ndarray:
        query = _unit(np.asarray(vector, np.float32).reshape(1, -1))[0]
        return (self.chunk_vectors(model_id, rows) @ query).astype(np.float32)

    def chunk_vectors(self, model_id: str, rows: np.ndarray) -> np.ndarray:
        self._with_chunks(model_id)
        rows = np.asarray(rows, np.int64)
        if self._exact:
            return self._vectors[model_id][self._positions(rows)]
        field = self.chunk_field[model_id]
        found = {r["row"]: r[field] for r in _where_in(self.client, self.col["chunks"], "row", rows, [field])}
        matrix = np.array([found[int(r)] for r in rows], np.float32).reshape(len(rows), self._dims[model_id])
        return _unit(matrix)

    # ------------------------------------------------------------ lexical

    def _term_stats(self, dims: Iterable[int]) -> dict[int, tuple[int, int]]:
        """(document frequency, quotable chunks stating it) per term dimension, over live rows."""
        wanted = set(dims)
        if self._exact:
            return {d: (self._postings.df(d), 0) for d in wanted}  # exact stores read stated words instead
        missing = wanted - self._terms.keys()
        if missing:
            found = {d: (0, 0) for d in missing}
            columns = ["term", "df", "stated"]
            rows = _where_in(self.client, self.col["terms"], "term", missing, columns, self.live)
            found.update({int(r["term"]): (int(r["df"]), int(r["stated"])) for r in rows})
            with self._lock:
                if len(self._terms) > 200_000:
                    self._terms.clear()
                self._terms.update(found)
        return {d: self._terms.get(d, (0, 0)) for d in wanted}

    def _weights(self, query: str) -> dict[int, float]:
        """The query's sparse vector: idf × count per term dimension the live rows use."""
        counts: dict[int, int] = {}
        for term, n in term_counts(query, self.cjk).items():
            counts[term_dim(term)] = counts.get(term_dim(term), 0) + n
        stats = self._term_stats(counts)
        return {d: float(idf(stats[d][0], self.size())) * n for d, n in counts.items() if stats[d][0] > 0}

    def term_weight(self, term: str) -> float:
        df = self._term_stats([term_dim(term)])[term_dim(term)][0]
        return float(idf(df if df > 0 else 1, self.size()))

    def lexical_scores(self, query: str, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, np.int64)
        weights = self._weights(query)
        if self._exact:
            return self._postings.accumulate(weights)[self._positions(rows)]
        found = {
            r["row"]: r["lexical"]
            for r in _where_in(self.client, self.col["chunks"], "row", rows, ["lexical"])
        }
        scores = [sum(float(w) * weights.get(int(d), 0.0) for d, w in found[int(r)].items()) for r in rows]
        return np.array(scores, np.float32)

    def lexical_search(self, query: str, k: int) -> Scored:
        weights = self._weights(query)
        if not weights:
            return Scored.empty()
        if self._exact:
            scores = self._postings.accumulate(weights)
            return _best(self._rows[scores > 0], scores[scores > 0], k)
        hits = self.client.search(
            self.col["chunks"],
            data=[weights],
            anns_field="lexical",
            limit=max(1, min(k, TOP_MAX)),
            filter=self.live,
            search_params={"metric_type": "IP"},
            output_fields=["row"],
        )[0]
        rows = np.array([h["row"] for h in hits], np.int64)
        scores = np.array([h["distance"] for h in hits], np.float32)
        return _best(rows[scores > 0], scores[scores > 0], k)

    # ------------------------------------------------------------ sentences

    def sentences(self, rows: np.ndarray, models: Collection[str] | None = None) -> SentenceRows:
        rows = np.asarray(rows, np.int64)
        at = self._positions(rows)
        if not self._exact:
            return self._fetch_sentences(at, list(self._dims) if models is None else list(models))
        every = self._all_sentences.only(models)
        if np.array_equal(rows, self._rows):
            return every
        first = np.searchsorted(every.sid, self._first_sid[at])
        spans = [np.arange(f, f + n) for f, n in zip(first, self._n_sents[at], strict=True)]
        index = np.concatenate(spans) if spans else np.zeros(0, np.int64)
        return _take(every, index)

    def _fetch_sentences(self, at: np.ndarray, models: list[str]) -> SentenceRows:
        sids = [
            s for f, n in zip(self._first_sid[at], self._n_sents[at], strict=True) for s in range(f, f + n)
        ]
        field = {m: self.field[m] for m in models}
        dims = {m: self._dims[m] for m in models}
        columns = ["sid", "row", "start", "end", *field.values()]
        found = sorted(
            _where_in(self.client, self.col["sentences"], "sid", sids, columns), key=lambda r: r["sid"]
        )
        if len(found) != len(sids):
            raise ValueError(f"{len(sids) - len(found)} sentences of live rows are missing")
        return _sentence_rows(found, field, dims) if found else SentenceRows.empty(dims)

    def stated(self, term: str, inside: bool = False) -> bool:
        if not self._exact:  # a large store answers from its term table, and never looks inside tokens
            return self._term_stats([term_dim(term)])[term_dim(term)][1] > 0
        if self._stated is None:
            with self._lock:
                if self._stated is None:
                    chunks = (Chunk.from_dict(json.loads(text)) for text in self._chunks)
                    self._stated = frozenset(t for c in chunks for t in stated_terms(c))
        return term in self._stated or (inside and any(term in word for word in self._stated))

    def close(self) -> None:
        self.client.close()
