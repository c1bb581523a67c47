"""The Milvus store (``KB_STORE=milvus``, kb/store.py): the index in Milvus collections at ``KB_MILVUS_URI``
(a Milvus Lite ``.db`` path, which one process at a time may open, a standalone server or a cluster).

Collections, named after ``Settings.milvus_collection`` (the prefix, ``kbq``):

- ``{prefix}_meta``: a row per kept version (number, name, manifest JSON); the newest is the published
  version, so inserting it is the atomic publish. Row -1 marks a writer that has not finished.
- per generation ``g`` (a rebuild starts a new one; readers of the old keep it until it is pruned):
  ``_g{g}_chunks``: pk = row; ``born``/``died``, the versions a row lives in (``born <= v < died``); doc_id,
  lang, kind, the chunk as JSON, its BM25 length and its sentences' id range; a FLOAT_VECTOR per embedder
  (``dense_0``… in manifest order, as model ids hold characters field names may not; IVF_FLAT, COSINE) and
  ``lexical``, kb's own saturated BM25 weights without idf (kb.lexical.saturate) as a SPARSE_FLOAT_VECTOR
  (SPARSE_INVERTED_INDEX, IP: its inner product with {term: idf × count} is BM25).
  ``_g{g}_sentences``: pk = sentence id (ascending with rows), row, span, vectors; visible with their row.
  ``_g{g}_documents``: each document as JSON in pieces (a VARCHAR holds 64 KiB), its digest and rows.
  ``_g{g}_terms``: per term, versioned like chunks: its document frequency over live rows and how many
  quotable chunks (kb.types.quotable) state it.

A reader of version v filters ``born <= v and died > v``, so later writes never show. A writer works on
v+1: new rows are born v+1, replaced ones get ``died = v+1`` (an upsert of the whole row), and publish inserts
the meta row. Publish deletes rows no kept version can see; the next writer undoes what an unfinished one
left. Below ``INDEX.store.exact_below`` live chunks a reader loads every live row and scores in numpy, as the
local store does; above it, Milvus searches, and rows are fetched by pk.

Terms become sparse dimensions through a 31-bit blake2b hash. Two terms that collide share a dimension and a
document frequency, so their scores merge (about 230 colliding pairs among a million distinct terms).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import math
import re
import threading
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kb.lexical import idf, saturate, term_counts
from kb.store import (
    DocumentRecord,
    IndexUnavailable,
    Scored,
    SentenceRows,
    StoreBase,
    check_models,
    indexed_text,
)
from kb.text import tokenize
from kb.tuning import INDEX, RETRIEVAL
from kb.types import Chunk, Document, quotable

if TYPE_CHECKING:
    from kb.config import Settings

KEEP_VERSIONS = 3  # as the local store: readers that loaded an older version can finish
SETTINGS_KEYS = ("format", "embedders", "settings", "settings_hash")
PARTS = ("chunks", "sentences", "documents", "terms")
WRITING = -1  # the meta row of a writer whose changes are neither published nor undone
INF = 2**62  # ``died`` of a live row
EMPTY_DIM = 2**31  # a chunk without terms: Milvus refuses empty sparse vectors, and no term hashes here
PIECE_CHARS = 16_000  # document JSON per VARCHAR: 16,000 characters are at most 64,000 bytes of UTF-8
VARCHAR_MAX = 65_535
TOP_MAX = 16_384  # Milvus returns at most this many rows per search or query
WINDOW = TOP_MAX  # primary keys per query of a scan
VECTOR_WINDOW = 1_024  # ... of a scan that reads vectors: each is decoded as Python floats on the way
INSERT_ROWS = 1_000  # rows per insert call
GROUP_CHUNKS = 5_000  # chunks of one upsert written together; a first build's avgdl is its first group's
IDS_PER_QUERY = 1_000  # values per ``field in [...]`` query
SEGMENT_ROWS = 65_536  # Milvus builds IVF per sealed segment: lists = INDEX.store.ivf_lists_per_sqrt · √this
PAD = [0.0, 0.0]  # Milvus wants a vector field in every collection; meta, documents and terms carry this one
_PREFIX = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,180}")


def term_dim(term: str) -> int:
    """A term's sparse dimension: 31 bits of blake2b (see the module note on collisions)."""
    return int.from_bytes(hashlib.blake2b(term.encode(), digest_size=4).digest(), "little") & 0x7FFFFFFF


def stated_terms(chunk: Chunk) -> set[str]:
    """What a chunk states (``Store.stated``): a quotable chunk's and its context's tokens."""
    return set(tokenize(f"{chunk.context} {chunk.text}")) if quotable(chunk) else set()


def published_version(settings: Settings) -> str | None:
    """The published version's name, or None when there is none (or Milvus cannot be reached)."""
    uri = _uri(settings)
    if uri.endswith(".db") and not Path(uri).exists():
        return None
    try:
        client = _connect(settings)
    except IndexUnavailable:
        return None
    try:
        meta = _Names(settings.milvus_collection).meta
        if not client.has_collection(meta):
            return None
        client.load_collection(meta)
        rows = client.query(meta, filter="version >= 0", output_fields=["version", "name"], limit=TOP_MAX)
        return str(max(rows, key=lambda r: r["version"])["name"]) if rows else None
    except Exception:  # an unreachable or half-made index has no published version
        return None
    finally:
        client.close()


# ---------------------------------------------------------------- collections


@dataclass(frozen=True)
class _Names:
    prefix: str

    def __post_init__(self) -> None:
        if not _PREFIX.fullmatch(self.prefix):
            raise IndexUnavailable(
                f"KB_MILVUS_COLLECTION is {self.prefix!r}: use letters, digits and underscores, not a "
                "leading digit"
            )

    @property
    def meta(self) -> str:
        return f"{self.prefix}_meta"

    def of(self, generation: int) -> dict[str, str]:
        return {part: f"{self.prefix}_g{generation}_{part}" for part in PARTS}

    def generations(self, client: Any) -> set[int]:
        pattern = re.compile(re.escape(self.prefix) + r"_g(\d+)_(?:" + "|".join(PARTS) + ")")
        return {int(m.group(1)) for n in client.list_collections() if (m := pattern.fullmatch(n))}


def _uri(settings: Settings) -> str:
    return settings.milvus_uri or str(Path(settings.index_dir).parent / "milvus.db")


def _connect(settings: Settings) -> Any:
    from pymilvus import MilvusClient

    uri = _uri(settings)
    if uri.endswith(".db"):
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
    try:
        return MilvusClient(uri=uri, token=settings.milvus_token)
    except Exception as exc:
        fix = (
            "is another process using it? Milvus Lite serves one process: stop that one, or set "
            "KB_MILVUS_URI to a Milvus server"
            if uri.endswith(".db")
            else "start Milvus, or set KB_MILVUS_URI (and KB_MILVUS_TOKEN)"
        )
        raise IndexUnavailable(f"cannot open Milvus at {uri} ({type(exc).__name__}): {fix}") from None


Fields = list[tuple[str, str, dict]]


def _create(client: Any, name: str, columns: Fields, indexes: list[tuple[str, str, str]]) -> None:
    """A collection of these fields (the first is the int64 primary key) and indexes, loaded. Strong
    consistency: a writer reads its own rows back, and a reader sees a version as soon as it is published."""
    from pymilvus import DataType

    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    for i, (field, dtype, options) in enumerate(columns):
        schema.add_field(field, getattr(DataType, dtype), is_primary=i == 0, **options)
    client.create_collection(name, schema=schema, consistency_level="Strong")
    params = client.prepare_index_params()
    lists = int(INDEX.store.ivf_lists_per_sqrt * math.sqrt(SEGMENT_ROWS))
    for field, kind, metric in indexes:
        extra: dict[str, Any] = {"metric_type": metric} if metric else {}  # a scalar index has no metric
        if kind == "IVF_FLAT":
            extra["params"] = {"nlist": lists}
        params.add_index(field, index_type=kind, **extra)
    client.create_index(name, params, sync=False)  # an empty collection's index is ready at once: no polling
    client.load_collection(name)


def _create_meta(client: Any, names: _Names) -> None:
    columns: Fields = [("version", "INT64", {}), ("name", "VARCHAR", {"max_length": 64})]
    columns += [("manifest", "VARCHAR", {"max_length": VARCHAR_MAX}), ("pad", "FLOAT_VECTOR", {"dim": 2})]
    _create(client, names.meta, columns, [("pad", "FLAT", "L2")])


def _create_generation(client: Any, names: dict[str, str], dims: Sequence[int]) -> None:
    life: Fields = [("born", "INT64", {}), ("died", "INT64", {})]
    dense: Fields = [(f"dense_{i}", "FLOAT_VECTOR", {"dim": d}) for i, d in enumerate(dims)]
    text, short = {"max_length": VARCHAR_MAX}, {"max_length": 16}
    doc: Fields = [("doc_id", "VARCHAR", {"max_length": 2048})]
    sent: Fields = [("first_sid", "INT64", {}), ("n_sents", "INT64", {})]
    pad: Fields = [("pad", "FLOAT_VECTOR", {"dim": 2})]
    chunks = [("row", "INT64", {}), *life, *doc, ("lang", "VARCHAR", short), ("kind", "VARCHAR", short)]
    chunks += [("chunk", "VARCHAR", text), ("length", "INT64", {}), *sent, *dense]
    chunks += [("lexical", "SPARSE_FLOAT_VECTOR", {})]
    dense_index = [(f"dense_{i}", "IVF_FLAT", "COSINE") for i in range(len(dims))]
    _create(client, names["chunks"], chunks, [*dense_index, ("lexical", "SPARSE_INVERTED_INDEX", "IP")])
    span: Fields = [("row", "INT64", {}), ("start", "INT64", {}), ("end", "INT64", {})]
    # sentences are fetched by id, never searched, but Milvus loads a collection only with every vector indexed
    flat = [(f"dense_{i}", "FLAT", "COSINE") for i in range(len(dims))]
    _create(client, names["sentences"], [("sid", "INT64", {}), *span, *dense], flat)
    pieces: Fields = [("piece", "INT64", {}), ("pieces", "INT64", {}), ("first_row", "INT64", {})]
    pieces += [("n_chunks", "INT64", {}), *sent, ("body", "VARCHAR", text)]
    documents = [
        ("part", "INT64", {}),
        *life,
        *doc,
        ("digest", "VARCHAR", {"max_length": 512}),
        *pieces,
        *pad,
    ]
    _create(client, names["documents"], documents, [("pad", "FLAT", "L2")])
    counts: Fields = [("term", "INT64", {}), ("df", "INT64", {}), ("stated", "INT64", {})]
    _create(
        client,
        names["terms"],
        [("id", "INT64", {}), *counts, *life, *pad],
        [("pad", "FLAT", "L2"), ("term", "INVERTED", "")],
    )


def _fields(part: str, models: int = 0) -> list[str]:
    """Every field of a part's rows (an upsert replaces whole rows); chunks carry ``models`` vectors."""
    life = ["born", "died"]
    return {
        "chunks": ["row", *life, "doc_id", "lang", "kind", "chunk", "length", "first_sid", "n_sents"]
        + [f"dense_{i}" for i in range(models)]
        + ["lexical"],
        "documents": ["part", *life, "doc_id", "digest", "piece", "pieces", "first_row", "n_chunks"]
        + ["first_sid", "n_sents", "body", "pad"],
        "terms": ["id", "term", "df", "stated", *life, "pad"],
    }[part]


def _live(version: int) -> str:
    return f"born <= {version} and died > {version}"


def _in(field: str, values: Sequence[int]) -> str:
    return f"{field} in [{','.join(map(str, values))}]"


def _where_in(
    client: Any, name: str, field: str, values: Iterable[int], columns: list[str], where: str = ""
) -> list[dict]:
    """Rows whose ``field`` is one of ``values`` (one row each at most), in batches; order not kept."""
    values = [int(v) for v in values]
    out: list[dict] = []
    for a in range(0, len(values), IDS_PER_QUERY):
        batch = values[a : a + IDS_PER_QUERY]
        expr = _in(field, batch) + (f" and {where}" if where else "")
        out.extend(client.query(name, filter=expr, output_fields=columns, limit=len(batch)))
    return out


def _scan(
    client: Any, name: str, pk: str, where: str, columns: list[str], end: int, start: int = 0, window: int = 0
) -> Iterator[list[dict]]:
    """The rows matching ``where`` with pk in [start, end), one window of pks per query and answer, in pk
    order: each answer stays under Milvus's 16,384-row cap without relying on result order."""
    window = window or WINDOW
    for a in range(start, end, window):
        expr = f"{pk} >= {a} and {pk} < {a + window}" + (f" and ({where})" if where else "")
        yield sorted(
            client.query(name, filter=expr, output_fields=columns, limit=window), key=lambda r: r[pk]
        )


def _batched(client: Any, name: str, rows: list[dict], upsert: bool = False) -> None:
    for a in range(0, len(rows), INSERT_ROWS):
        (client.upsert if upsert else client.insert)(name, rows[a : a + INSERT_ROWS])


def _delete_ids(client: Any, name: str, pk: str, ids: Sequence[int]) -> None:
    for a in range(0, len(ids), IDS_PER_QUERY):
        client.delete(name, filter=_in(pk, ids[a : a + IDS_PER_QUERY]))


def _meta(client: Any, names: _Names) -> tuple[list[dict], bool]:
    """The kept versions' meta rows, oldest first, manifests parsed; and whether a writer left changes."""
    if not client.has_collection(names.meta):
        return [], False
    client.load_collection(names.meta)  # Milvus Lite starts with every collection released
    columns = ["version", "name", "manifest"]
    rows = client.query(names.meta, filter=f"version >= {WRITING}", output_fields=columns, limit=TOP_MAX)
    versions = sorted((r for r in rows if r["version"] >= 0), key=lambda r: r["version"])
    return [r | {"manifest": json.loads(r["manifest"])} for r in versions], any(
        r["version"] == WRITING for r in rows
    )


def _load(client: Any, collections: Iterable[str]) -> None:
    for name in collections:
        client.load_collection(name)


def _milvus(manifest: dict) -> dict:
    return manifest["milvus"]


# ---------------------------------------------------------------- reading


class _Postings:
    """BM25 postings by term dimension over the live rows of an exact store: the stored weights taken back
    to term counts and saturated again with the live rows' own average length, so that a small store scores
    as a fresh build of its live chunks would (as the local store does)."""

    def __init__(
        self, sparse: list[dict], lengths: np.ndarray, built_avgdl: float | None, k1: float, b: float
    ):
        pos, dims, weights = [], [], []
        for i, vec in enumerate(sparse):
            for d, w in vec.items():
                if int(d) != EMPTY_DIM:
                    pos.append(i)
                    dims.append(int(d))
                    weights.append(float(w))
        at, dim, w = np.array(pos, np.int64), np.array(dims, np.int64), np.array(weights, np.float64)
        length = lengths[at].astype(np.float64)
        norm = k1 * (1 - b + b * length / max(built_avgdl or 1.0, 1e-9))
        tf = np.maximum(np.rint(w * norm / np.maximum(k1 + 1 - w, 1e-12)), 1.0)  # saturate, inverted
        avgdl = float(lengths.mean()) if len(lengths) else 1.0
        data = saturate(tf.astype(np.float32), length.astype(np.float32), avgdl, k1, b)
        order = np.lexsort((at, dim))
        uniq, first = np.unique(dim[order], return_index=True)
        self.vocab = dict(zip(uniq.tolist(), range(len(uniq)), strict=True))
        self.indptr = np.append(first, len(order)).astype(np.int64)
        self.indices, self.data, self.size = at[order], data[order], len(lengths)

    def df(self, dim: int) -> int:
        j = self.vocab.get(dim)
        return 0 if j is None else int(self.indptr[j + 1] - self.indptr[j])

    def accumulate(self, weights: dict[int, float]) -> np.ndarray:
        out = np.zeros(self.size, np.float32)
        for dim, weight in weights.items():
            j = self.vocab.get(dim)
            if j is not None:
                a, b = self.indptr[j], self.indptr[j + 1]
                out[self.indices[a:b]] += self.data[a:b] * np.float32(weight)
        return out


@dataclass
class _Entry:
    """A stored document, as a catalog knows it."""

    part: int  # the pk of its first piece; the others follow
    pieces: int
    digest: str
    first_row: int
    n_chunks: int
    first_sid: int
    n_sents: int
    born: int


_ENTRY = [f.name for f in fields(_Entry)]


def _catalog(client: Any, collection: str, version: int, end: int) -> dict[str, _Entry]:
    windows = _scan(client, collection, "part", f"piece == 0 and {_live(version)}", ["doc_id", *_ENTRY], end)
    return {r["doc_id"]: _Entry(*(r[k] for k in _ENTRY)) for rows in windows for r in rows}


def _sentence_rows(rows: list[dict], field: dict[str, str], dims: dict[str, int]) -> SentenceRows:
    return SentenceRows(
        np.array([r["sid"] for r in rows], np.int64),
        np.array([r["row"] for r in rows], np.int64),
        np.array([r["start"] for r in rows], np.int32),
        np.array([r["end"] for r in rows], np.int32),
        {m: np.array([r[f] for r in rows], np.float32).reshape(-1, dims[m]) for m, f in field.items()},
    )


def _concat(parts: list[SentenceRows], dims: dict[str, int]) -> SentenceRows:
    if not parts:
        return SentenceRows.empty(dims)
    return SentenceRows(
        np.concatenate([p.sid for p in parts]),
        np.concatenate([p.row for p in parts]),
        np.concatenate([p.start for p in parts]),
        np.concatenate([p.end for p in parts]),
        {m: np.vstack([p.vectors[m] for p in parts]) for m in dims},
    )


def _take(rows: SentenceRows, index: np.ndarray) -> SentenceRows:
    vectors = {m: v[index] for m, v in rows.vectors.items()}
    return SentenceRows(rows.sid[index], rows.row[index], rows.start[index], rows.end[index], vectors)


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
        self.field = {m: f"dense_{i}" for i, m in enumerate(self._dims)}
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
            columns += ["chunk", "length", "lexical", *self.field.values()]
        end = _milvus(self._manifest)["next"]["row"]
        rows, chunks, lexical = [], [], []
        lengths, vectors = [], {m: [] for m in self.field}  # type: ignore[var-annotated]
        window = VECTOR_WINDOW if self._exact else WINDOW
        for found in _scan(self.client, self.col["chunks"], "row", self.live, columns, end, window=window):
            rows += [(r["row"], r["lang"], r["kind"], r["first_sid"], r["n_sents"]) for r in found]
            if self._exact:  # each window's vectors to numpy at once: Python floats take 8x the memory
                chunks += [r["chunk"] for r in found]
                lexical += [r["lexical"] for r in found]
                lengths += [r["length"] for r in found]
                for m, f in self.field.items():
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
        query = _unit(np.asarray(vector, np.float32).reshape(1, -1))[0]
        if self._exact:
            return _best(self._rows, self._vectors[model_id] @ query, k)
        hits = self.client.search(
            self.col["chunks"],
            data=[query.tolist()],
            anns_field=self.field[model_id],
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
        rows = np.asarray(rows, np.int64)
        if self._exact:
            return self._vectors[model_id][self._positions(rows)]
        field = self.field[model_id]
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


def _unit(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.maximum(norms, 1e-12)).astype(np.float32)


def _best(rows: np.ndarray, scores: np.ndarray, k: int) -> Scored:
    """The ``k`` best (ties to the lower row), in row order."""
    rows, scores = np.asarray(rows, np.int64), np.asarray(scores, np.float32)
    if len(rows) > k:
        keep = np.lexsort((rows, -scores))[: max(k, 0)]
        rows, scores = rows[keep], scores[keep]
    order = np.argsort(rows)
    return Scored(rows[order], scores[order])


# ---------------------------------------------------------------- writing


class MilvusWriter:
    """Upserts and deletes as rows of the next version; ``publish`` makes it the published one. The caller
    holds the writer lock (kb.indexer). Before its first change a writer marks the meta collection, so the
    next one knows whether there is anything to undo."""

    def __init__(self, client: Any, names: _Names, expected: dict, versions: list[dict], rebuilt: str | None):
        self.client, self.names, self.expected, self._rebuilt = client, names, expected, rebuilt
        self.versions = versions  # the kept versions' meta rows, oldest first
        self.published: dict | None = versions[-1]["manifest"] if versions else None
        self.number = _milvus(self.published)["number"] if self.published else 0
        self.models = [e["id"] for e in expected["embedders"]]
        lexical = expected["settings"]["lexical"]
        self.cjk, self.k1, self.b = lexical["cjk"], float(lexical["k1"]), float(lexical["b"])
        self.catalog: dict[str, _Entry] = {}
        self.deltas: dict[
            int, list[int]
        ] = {}  # term dim -> [df change, stated change] since the last publish
        self.buffers: dict[str, list[dict]] = {"sentences": [], "chunks": [], "documents": []}
        self.killed = dict.fromkeys(("chunks", "documents", "terms"), 0)  # rows given ``died`` this version
        self.marked = False

    @classmethod
    def open(cls, settings: Settings, expected_settings: dict, rebuild: bool = False) -> MilvusWriter:
        names = _Names(settings.milvus_collection)
        client = _connect(settings)
        try:
            if not client.has_collection(names.meta):
                _create_meta(client, names)
            versions, unfinished = _meta(client, names)
            rebuilt = None
            if versions and rebuild:
                rebuilt = "rebuild requested"
            elif versions:
                old = versions[-1]["manifest"]
                rebuilt = next(
                    (f"{k} changed" for k in SETTINGS_KEYS if old.get(k) != expected_settings.get(k)), None
                )
            writer = cls(client, names, expected_settings, versions, rebuilt)
            if unfinished:
                writer._undo()
            writer._begin()
        except Exception:
            client.close()
            raise
        return writer

    @property
    def w(self) -> int:
        """The version being written."""
        return self.number + 1

    def _begin(self) -> None:
        """Continue the published generation, or start a new one (a first build, a rebuild)."""
        if self.published is not None and self._rebuilt is None:
            meta = _milvus(self.published)
            self.generation, self.next = meta["generation"], dict(meta["next"])
            self.avgdl: float | None = self.published.get("avgdl")
            self.fresh = False
            self.col = self.names.of(self.generation)
            _load(self.client, self.col.values())
            self.catalog = _catalog(self.client, self.col["documents"], self.number, self.next["doc"])
            return
        self._mark()
        used = {_milvus(v["manifest"])["generation"] for v in self.versions}
        self.generation = max(self.names.generations(self.client) | used, default=0) + 1
        self.next = dict.fromkeys(("row", "sid", "doc", "term"), 0)
        self.avgdl, self.fresh = None, True
        self.col = self.names.of(self.generation)
        _create_generation(self.client, self.col, [int(e["dim"]) for e in self.expected["embedders"]])

    def _mark(self) -> None:
        if not self.marked:
            row = {"version": WRITING, "name": "writing", "manifest": "{}", "pad": PAD}
            self.client.upsert(self.names.meta, [row])
            self.marked = True

    @property
    def rebuilt(self) -> str | None:
        return self._rebuilt

    def digests(self) -> dict[str, str]:
        return {d: e.digest for d, e in self.catalog.items()}

    def current(self) -> str:
        return str(self.published["version"]) if self.published else ""

    # ------------------------------------------------------------ changes

    def upsert(self, records: Iterable[DocumentRecord]) -> None:
        group: dict[str, DocumentRecord] = {}
        chunks = 0
        for record in records:
            group.pop(record.document.doc_id, None)  # the last copy of a document wins
            group[record.document.doc_id] = record
            chunks += len(record.chunks)
            if chunks >= GROUP_CHUNKS:
                self._write_group(list(group.values()))
                group, chunks = {}, 0
        if group:
            self._write_group(list(group.values()))
        self._flush()

    def delete(self, doc_ids: Iterable[str]) -> None:
        self._flush()
        self._kill([d for d in dict.fromkeys(doc_ids) if d in self.catalog])

    def _write_group(self, records: list[DocumentRecord]) -> None:
        self._mark()
        self._flush()
        self._kill([r.document.doc_id for r in records if r.document.doc_id in self.catalog])
        counts = [[term_counts(indexed_text(c), self.cjk) for c in r.chunks] for r in records]
        if self.avgdl is None:
            lengths = [sum(tc.values()) for per_doc in counts for tc in per_doc]
            self.avgdl = float(np.mean(lengths)) if lengths and np.mean(lengths) > 0 else None
        for record, per_doc in zip(records, counts, strict=True):
            self._add(record, per_doc)
            if max(len(b) for b in self.buffers.values()) >= INSERT_ROWS:
                self._flush()

    def _add(self, record: DocumentRecord, counts: list) -> None:
        doc, n, n_units = record.document, len(record.chunks), len(record.units)
        for m, e in zip(self.models, self.expected["embedders"], strict=True):
            if record.vectors[m].shape != (n, e["dim"]) or record.unit_vectors[m].shape != (
                n_units,
                e["dim"],
            ):
                raise ValueError(
                    f"{doc.doc_id}: the vectors of {m} are not ({n} chunks, {n_units} units) × {e['dim']}"
                )
        order = sorted(range(n_units), key=lambda j: record.units[j][0])  # sentence ids ascend with rows
        per_chunk = np.bincount([record.units[j][0] for j in order], minlength=n).astype(np.int64)
        row0, sid0 = self.next["row"], self.next["sid"]
        first_sids = sid0 + np.concatenate([[0], np.cumsum(per_chunk)[:-1]]).astype(np.int64)
        for i, (chunk, tc) in enumerate(zip(record.chunks, counts, strict=True)):
            text = json.dumps(chunk.to_dict(), ensure_ascii=False)
            if len(text.encode()) > VARCHAR_MAX:
                raise ValueError(f"{doc.doc_id}: chunk {chunk.chunk_id} is over {VARCHAR_MAX} bytes as JSON")
            lexical, length = self._sparse(tc)
            self._count(lexical, {term_dim(t) for t in stated_terms(chunk)}, +1)
            row = {"row": row0 + i, "born": self.w, "died": INF, "doc_id": doc.doc_id, "lang": chunk.lang}
            row |= {"kind": chunk.kind, "chunk": text, "length": length, "first_sid": int(first_sids[i])}
            row |= {"n_sents": int(per_chunk[i]), "lexical": lexical}
            row |= {
                f"dense_{k}": record.vectors[m][i].astype(np.float32).tolist()
                for k, m in enumerate(self.models)
            }
            self.buffers["chunks"].append(row)
        for s, j in enumerate(order):
            c, a, b = record.units[j]
            sentence = {"sid": sid0 + s, "row": row0 + c, "start": int(a), "end": int(b)}
            sentence |= {
                f"dense_{k}": record.unit_vectors[m][j].astype(np.float32).tolist()
                for k, m in enumerate(self.models)
            }
            self.buffers["sentences"].append(sentence)
        body = json.dumps(doc.to_dict(), ensure_ascii=False)
        pieces = [body[a : a + PIECE_CHARS] for a in range(0, len(body), PIECE_CHARS)] or [""]
        entry = _Entry(self.next["doc"], len(pieces), record.digest, row0, n, sid0, n_units, self.w)
        head = {"born": self.w, "died": INF, "doc_id": doc.doc_id, "digest": record.digest, "pad": PAD}
        for p, piece in enumerate(pieces):
            self.buffers["documents"].append(
                head
                | {k: getattr(entry, k) for k in _ENTRY if k not in ("part", "digest", "born")}
                | {"part": entry.part + p, "piece": p, "body": piece}
            )
        self.catalog[doc.doc_id] = entry
        self.next["row"] += n
        self.next["sid"] += n_units
        self.next["doc"] += len(pieces)

    def _sparse(self, counts: Any) -> tuple[dict[int, float], int]:
        """A chunk's saturated BM25 weights per term dimension (colliding terms add up), and its length."""
        tf: dict[int, int] = {}
        for term, n in counts.items():
            tf[term_dim(term)] = tf.get(term_dim(term), 0) + n
        length = sum(tf.values())
        if not tf:
            return {EMPTY_DIM: 1.0}, 0
        dims = list(tf)
        counted = np.array([tf[d] for d in dims], np.float32)
        weights = saturate(
            counted, np.full(len(dims), length, np.float32), self.avgdl or length, self.k1, self.b
        )
        return dict(zip(dims, weights.tolist(), strict=True)), length

    def _count(self, lexical: Iterable[int], stated: Iterable[int], sign: int) -> None:
        """A chunk's terms joining (+1) or leaving (-1) the live rows' document frequencies."""
        for d in lexical:
            if int(d) != EMPTY_DIM:
                self.deltas.setdefault(int(d), [0, 0])[0] += sign
        for d in stated:
            self.deltas.setdefault(d, [0, 0])[1] += sign

    def _flush(self) -> None:
        for part, rows in self.buffers.items():  # sentences before their chunks: undo goes by counters
            _batched(self.client, self.col[part], rows)
            self.buffers[part] = []

    def _kill(self, doc_ids: list[str]) -> None:
        """The stored copies of ``doc_ids`` leave the version being written: rows a published version shows
        get ``died``, rows only this writer wrote are deleted."""
        if not doc_ids:
            return
        self._mark()
        entries = [self.catalog.pop(d) for d in doc_ids]
        for own in (False, True):
            mine = [e for e in entries if (e.born == self.w) == own]
            rows = [r for e in mine for r in range(e.first_row, e.first_row + e.n_chunks)]
            columns = ["row", "chunk", "lexical"] if own else _fields("chunks", len(self.models))
            found = _where_in(self.client, self.col["chunks"], "row", rows, columns)
            for r in found:
                self._count(
                    r["lexical"],
                    {term_dim(t) for t in stated_terms(Chunk.from_dict(json.loads(r["chunk"])))},
                    -1,
                )
            parts = [p for e in mine for p in range(e.part, e.part + e.pieces)]
            if own:
                _delete_ids(
                    self.client,
                    self.col["sentences"],
                    "sid",
                    [s for e in mine for s in range(e.first_sid, e.first_sid + e.n_sents)],
                )
                _delete_ids(self.client, self.col["chunks"], "row", rows)
                _delete_ids(self.client, self.col["documents"], "part", parts)
            elif mine:
                docs = _where_in(self.client, self.col["documents"], "part", parts, _fields("documents"))
                _batched(self.client, self.col["chunks"], [r | {"died": self.w} for r in found], upsert=True)
                _batched(
                    self.client, self.col["documents"], [r | {"died": self.w} for r in docs], upsert=True
                )
                self.killed["chunks"] += len(found)
                self.killed["documents"] += len(docs)

    # ------------------------------------------------------------ publishing

    def publish(self) -> str:
        """Write the term table's changes and the new version's meta row; prune what no kept version sees."""
        self._mark()
        self._flush()
        self._write_terms()
        for part in ("chunks", "terms"):  # seal what questions search: Milvus indexes sealed segments
            try:
                self.client.flush(self.col[part])
            except Exception:  # only an optimisation, and servers rate-limit flushes (flushRate)
                pass
        now = dt.datetime.now(dt.UTC)
        name = f"{now:%Y%m%dT%H%M%S}-{self.w}"
        milvus = {
            "number": self.w,
            "generation": self.generation,
            "next": dict(self.next),
            "killed": self.killed,
        }
        manifest = {
            **self.expected,
            "version": name,
            "created": now.isoformat(timespec="seconds"),
            "avgdl": self.avgdl,
            "counts": {
                "documents": len(self.catalog),
                "chunks": sum(e.n_chunks for e in self.catalog.values()),
                "sentences": sum(e.n_sents for e in self.catalog.values()),
            },
            "milvus": milvus | {"fields": {m: f"dense_{i}" for i, m in enumerate(self.models)}},
        }
        text = json.dumps(manifest, ensure_ascii=False)
        if len(text.encode()) > VARCHAR_MAX:
            raise ValueError(
                f"the manifest is {len(text.encode())} bytes; a Milvus VARCHAR holds {VARCHAR_MAX}"
            )
        self.client.insert(self.names.meta, [{"version": self.w, "name": name, "manifest": text, "pad": PAD}])
        self.versions.append({"version": self.w, "name": name, "manifest": manifest})
        self.published, self.number, self.fresh = manifest, self.w, False
        self.killed = dict.fromkeys(self.killed, 0)
        self._prune()
        self.client.delete(self.names.meta, filter=f"version == {WRITING}")
        self.marked = False
        return name

    def _write_terms(self) -> None:
        """New rows for the terms whose counts changed; their old rows get ``died``."""
        touched = [d for d, (a, b) in self.deltas.items() if a or b]
        old: dict[int, dict] = {}
        if touched and not self.fresh:
            columns, live = _fields("terms"), _live(self.w)
            if len(touched) <= 4 * IDS_PER_QUERY:
                rows = _where_in(self.client, self.col["terms"], "term", touched, columns, live)
            else:  # many terms: one pass over the table beats a query per thousand
                wanted = set(touched)
                scan = _scan(self.client, self.col["terms"], "id", live, columns, self.next["term"])
                rows = [r for found in scan for r in found if r["term"] in wanted]
            old = {int(r["term"]): r for r in rows}
        killed, added = [], []
        for d in touched:
            before = old.get(d)
            df = (before["df"] if before else 0) + self.deltas[d][0]
            stated = (before["stated"] if before else 0) + self.deltas[d][1]
            if before:
                killed.append(before | {"died": self.w})
            if df > 0 or stated > 0:
                row = {
                    "id": self.next["term"],
                    "term": d,
                    "df": df,
                    "stated": stated,
                    "born": self.w,
                    "died": INF,
                }
                added.append(row | {"pad": PAD})
                self.next["term"] += 1
        _batched(self.client, self.col["terms"], killed, upsert=True)
        _batched(self.client, self.col["terms"], added)
        self.killed["terms"] += len(killed)
        self.deltas = {}

    def _prune(self) -> None:
        """Rows that died in the oldest kept version are seen by none now; older versions' meta rows and
        generations go too."""
        oldest = self.number - (KEEP_VERSIONS - 1)
        due = [_milvus(v["manifest"]) for v in self.versions if v["version"] == oldest]
        killed = {
            p: sum(m.get("killed", {}).get(p, 0) for m in due if m["generation"] == self.generation)
            for p in self.killed
        }
        dead = f"died <= {oldest}"
        if killed["chunks"]:
            columns = ["row", "first_sid", "n_sents"]
            while found := self.client.query(
                self.col["chunks"], filter=dead, output_fields=columns, limit=TOP_MAX
            ):
                _delete_ids(
                    self.client,
                    self.col["sentences"],
                    "sid",
                    [s for r in found for s in range(r["first_sid"], r["first_sid"] + r["n_sents"])],
                )
                _delete_ids(self.client, self.col["chunks"], "row", [r["row"] for r in found])
        for part in ("documents", "terms"):
            if killed[part]:
                self.client.delete(self.col[part], filter=dead)
        self.client.delete(self.names.meta, filter=f"version >= 0 and version < {oldest}")
        self.versions = [v for v in self.versions if v["version"] >= oldest]
        self._drop_unused_generations()

    def _drop_unused_generations(self) -> None:
        used = {_milvus(v["manifest"])["generation"] for v in self.versions}
        for g in self.names.generations(self.client) - used:
            for name in self.names.of(g).values():
                if self.client.has_collection(name):
                    self.client.drop_collection(name)

    def _undo(self) -> None:
        """Undo what a writer changed without publishing: a generation no version uses, rows past the
        published counters, ``died`` marks past the published version; then the mark."""
        self._drop_unused_generations()
        if self.published is not None:
            meta = _milvus(self.published)
            col = self.names.of(meta["generation"])
            _load(self.client, col.values())
            ahead = {
                "sentences": ("sid", "sid"),
                "chunks": ("row", "row"),
                "documents": ("part", "doc"),
                "terms": ("id", "term"),
            }
            for part, (pk, counter) in ahead.items():
                self.client.delete(col[part], filter=f"{pk} >= {meta['next'][counter]}")
            killed = f"died > {self.number} and died < {INF}"
            models = len(self.published["embedders"])
            for part in ("chunks", "documents", "terms"):
                columns = _fields(part, models)
                while found := self.client.query(
                    col[part], filter=killed, output_fields=columns, limit=INSERT_ROWS
                ):
                    self.client.upsert(col[part], [r | {"died": INF} for r in found])
        self.client.delete(self.names.meta, filter=f"version == {WRITING}")
        self.marked = False

    def close(self) -> None:
        """Unpublished changes are undone now (or, after a crash, by the next writer)."""
        try:
            if self.marked:
                self.buffers = {p: [] for p in self.buffers}
                self._undo()
        finally:
            self.client.close()
