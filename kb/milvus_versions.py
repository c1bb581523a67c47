"""The version life of the Milvus writer (kb/milvus_writer.py): ``publish`` writes the term table's changes and
the new version's meta row, then prunes rows that no kept version sees; ``_undo`` takes back what a writer
changed without publishing. A mixin of MilvusWriter, whose state (client, collections, counters, catalog)
it reads and updates."""

from __future__ import annotations

import datetime as dt
import json
from abc import ABC, abstractmethod
from typing import Any

from kb.milvus_schema import (
    IDS_PER_QUERY,
    INF,
    INSERT_ROWS,
    KEEP_VERSIONS,
    PAD,
    TOP_MAX,
    VARCHAR_MAX,
    WRITING,
    _batched,
    _delete_ids,
    _fields,
    _live,
    _load,
    _milvus,
    _scan,
    _where_in,
    chunk_fields,
    dense_fields,
)


class VersionKeeping(ABC):
    """Publishing, pruning and undoing versions; the writer's state is MilvusWriter's."""

    client: Any
    names: Any
    col: dict[str, str]
    generation: int
    next: dict[str, int]
    killed: dict[str, int]
    deltas: dict[int, list[int]]
    versions: list[dict]
    published: dict | None
    number: int
    fresh: bool
    marked: bool
    expected: dict
    models: list[str]
    catalog: dict[str, Any]
    avgdl: float | None

    @property
    @abstractmethod
    def w(self) -> int:
        """The version being written."""

    @abstractmethod
    def _mark(self) -> None:
        """Mark the meta collection before the first change, so a crash is undone by the next writer."""

    @abstractmethod
    def _flush(self) -> None:
        """Write the buffered rows."""

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
            "milvus": milvus | {"fields": dense_fields(self.expected["embedders"])},
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
            vectors = chunk_fields(self.published).values()
            for part in ("chunks", "documents", "terms"):
                columns = _fields(part, vectors)
                while found := self.client.query(
                    col[part], filter=killed, output_fields=columns, limit=INSERT_ROWS
                ):
                    self.client.upsert(col[part], [r | {"died": INF} for r in found])
        self.client.delete(self.names.meta, filter=f"version == {WRITING}")
        self.marked = False
