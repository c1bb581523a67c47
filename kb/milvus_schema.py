"""The Milvus store (``KB_STORE=milvus``, kb/store.py): the index in Milvus collections at ``KB_MILVUS_URI``
(a Milvus Lite ``.db`` path, which one process at a time may open, a standalone server or a cluster).

Collections, named after ``Settings.milvus_collection`` (the prefix, ``kbq``):

- ``{prefix}_meta``: a row per kept version (number, name, manifest JSON); the newest is the published
  version, so inserting it is the atomic publish. Row -1 marks a writer that has not finished.
- per generation ``g`` (a rebuild starts a new one; readers of the old keep it until it is pruned):
  ``_g{g}_chunks``: pk = row; ``born``/``died``, the versions a row lives in (``born <= v < died``); doc_id,
  lang, kind, the chunk as JSON, its BM25 length and its sentences' id range; a FLOAT_VECTOR per embedder
  with chunk vectors (``dense_0``… in manifest order, as model ids hold characters field names may not;
  IVF_FLAT, COSINE; a sentence-only model's number is skipped, kb.store.chunk_models) and
  ``lexical``, kb's own saturated BM25 weights without idf (kb.lexical.saturate) as a SPARSE_FLOAT_VECTOR
  (SPARSE_INVERTED_INDEX, IP: its inner product with {term: idf × count} is BM25).
  ``_g{g}_sentences``: pk = sentence id (ascending with rows), row, span, every model's vector; visible
  with their row.
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

import hashlib
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kb.store import (
    IndexUnavailable,
    chunk_models,
)
from kb.text import tokenize
from kb.tuning import INDEX
from kb.types import Chunk, quotable

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


def dense_fields(embedders: Sequence[Mapping]) -> dict[str, str]:
    """Each model's vector field, ``dense_0``… in manifest order (model ids hold characters field names may
    not); ``embedders`` as a manifest lists them."""
    return {e["id"]: f"dense_{i}" for i, e in enumerate(embedders)}


def chunk_fields(settings: Mapping) -> dict[str, str]:
    """The vector fields of the chunks collection: only models with chunk vectors (kb.store.chunk_models)."""
    fields = dense_fields(settings["embedders"])
    return {m: fields[m] for m in chunk_models(settings)}


def _create_generation(client: Any, names: dict[str, str], settings: Mapping) -> None:
    life: Fields = [("born", "INT64", {}), ("died", "INT64", {})]
    dims = {e["id"]: int(e["dim"]) for e in settings["embedders"]}
    every = dense_fields(settings["embedders"])
    dense: Fields = [(every[m], "FLOAT_VECTOR", {"dim": d}) for m, d in dims.items()]
    on_chunks = chunk_fields(settings)
    chunk_dense: Fields = [(f, "FLOAT_VECTOR", {"dim": dims[m]}) for m, f in on_chunks.items()]
    text, short = {"max_length": VARCHAR_MAX}, {"max_length": 16}
    doc: Fields = [("doc_id", "VARCHAR", {"max_length": 2048})]
    sent: Fields = [("first_sid", "INT64", {}), ("n_sents", "INT64", {})]
    pad: Fields = [("pad", "FLOAT_VECTOR", {"dim": 2})]
    chunks = [("row", "INT64", {}), *life, *doc, ("lang", "VARCHAR", short), ("kind", "VARCHAR", short)]
    chunks += [("chunk", "VARCHAR", text), ("length", "INT64", {}), *sent, *chunk_dense]
    chunks += [("lexical", "SPARSE_FLOAT_VECTOR", {})]
    dense_index = [(f, "IVF_FLAT", "COSINE") for f in on_chunks.values()]
    _create(client, names["chunks"], chunks, [*dense_index, ("lexical", "SPARSE_INVERTED_INDEX", "IP")])
    span: Fields = [("row", "INT64", {}), ("start", "INT64", {}), ("end", "INT64", {})]
    # sentences are fetched by id, never searched, but Milvus loads a collection only with every vector indexed
    flat = [(f, "FLAT", "COSINE") for f in every.values()]
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


def _fields(part: str, dense: Iterable[str] = ()) -> list[str]:
    """Every field of a part's rows (an upsert replaces whole rows); chunks carry the ``dense`` fields."""
    life = ["born", "died"]
    return {
        "chunks": ["row", *life, "doc_id", "lang", "kind", "chunk", "length", "first_sid", "n_sents"]
        + list(dense)
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
