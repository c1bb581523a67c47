"""Writing the Milvus store (kb/milvus_store.py): a writer works on version v+1, ``publish`` inserts its meta
row, and the next writer undoes what an unfinished one left. Adding and removing documents' rows is here;
publishing, pruning and undoing versions in kb/milvus_versions.py."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from kb.lexical import saturate, term_counts
from kb.store import (
    DocumentRecord,
    indexed_text,
)
from kb.types import Chunk

if TYPE_CHECKING:
    from kb.config import Settings

from kb.milvus_rows import (
    _ENTRY,
    _catalog,
    _Entry,
)
from kb.milvus_schema import (
    EMPTY_DIM,
    GROUP_CHUNKS,
    INF,
    INSERT_ROWS,
    PAD,
    PIECE_CHARS,
    SETTINGS_KEYS,
    VARCHAR_MAX,
    WRITING,
    _batched,
    _connect,
    _create_generation,
    _create_meta,
    _delete_ids,
    _fields,
    _load,
    _meta,
    _milvus,
    _Names,
    _where_in,
    chunk_fields,
    dense_fields,
    stated_terms,
    term_dim,
)
from kb.milvus_versions import VersionKeeping


class MilvusWriter(VersionKeeping):
    """Upserts and deletes as rows of the next version; ``publish`` makes it the published one. The caller
    holds the writer lock (kb.indexer). Before its first change a writer marks the meta collection, so the
    next one knows whether there is anything to undo."""

    def __init__(self, client: Any, names: _Names, expected: dict, versions: list[dict], rebuilt: str | None):
        self.client, self.names, self.expected, self._rebuilt = client, names, expected, rebuilt
        self.versions = versions  # the kept versions' meta rows, oldest first
        self.published: dict | None = versions[-1]["manifest"] if versions else None
        self.number = _milvus(self.published)["number"] if self.published else 0
        self.models = [e["id"] for e in expected["embedders"]]
        self.fields = dense_fields(expected["embedders"])  # sentences hold every model's vector
        self.on_chunks = chunk_fields(expected)  # chunks only those with chunk vectors
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
        _create_generation(self.client, self.col, self.expected)

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
            chunks_ok = m not in self.on_chunks or record.vectors[m].shape == (n, e["dim"])
            if not chunks_ok or record.unit_vectors[m].shape != (n_units, e["dim"]):
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
            row |= {f: record.vectors[m][i].astype(np.float32).tolist() for m, f in self.on_chunks.items()}
            self.buffers["chunks"].append(row)
        for s, j in enumerate(order):
            c, a, b = record.units[j]
            sentence = {"sid": sid0 + s, "row": row0 + c, "start": int(a), "end": int(b)}
            sentence |= {
                f: record.unit_vectors[m][j].astype(np.float32).tolist() for m, f in self.fields.items()
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
            columns = ["row", "chunk", "lexical"] if own else _fields("chunks", self.on_chunks.values())
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

    def close(self) -> None:
        """Unpublished changes are undone now (or, after a crash, by the next writer)."""
        try:
            if self.marked:
                self.buffers = {p: [] for p in self.buffers}
                self._undo()
        finally:
            self.client.close()
