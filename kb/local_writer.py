"""Writing the local store (kb/local_store.py): upserts and deletes go to a new segment and a new version,
and ``publish`` swaps the version link in atomically. Old versions are pruned past ``KEEP_VERSIONS``."""

from __future__ import annotations

import datetime as dt
import json
import secrets
import shutil
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from kb.fsutil import install_link
from kb.lexical import term_counts
from kb.local_store import LocalStore, published_version, segments_dir, versions_dir
from kb.segment import Segment
from kb.segment_builder import SegmentBuilder
from kb.store import (
    DocumentRecord,
    IndexUnavailable,
    chunk_models,
    indexed_text,
)
from kb.tuning import INDEX

KEEP_VERSIONS = 3  # readers that loaded an older version can finish
TMP_PREFIX = (
    ".tmp-"  # a version or segment being written; one left behind by a crash is removed by the next writer
)
SETTINGS_KEYS = ("format", "embedders", "settings", "settings_hash")


class LocalWriter:
    """Upserts and deletes into a new segment and version; ``publish`` swaps the version in.
    The caller holds the writer lock (kb.indexer.writer_lock)."""

    def __init__(
        self, index_dir: Path, expected: dict, previous: LocalStore | None, rebuilt: str | None
    ) -> None:
        self.index_dir = index_dir
        self.expected = expected
        self._rebuilt = rebuilt
        self.previous = previous
        self.dims = {e["id"]: int(e["dim"]) for e in expected["embedders"]}
        self.chunk_models = chunk_models(expected)
        base = previous.manifest if previous else {}
        self.catalog: dict[str, dict] = {d: dict(e) for d, e in base.get("documents", {}).items()}
        self.segment_ids: list[str] = list(base.get("segments", []))
        self.avgdl: float | None = base.get("avgdl")
        self.dead_df: Counter[str] = Counter(previous.dead_df if previous else {})
        self._segments = {s.id: s for s in previous.segments} if previous else {}
        self.builder: SegmentBuilder | None = None
        self.changed = bool(rebuilt)

    @classmethod
    def open(cls, index_dir: Path, expected: dict, rebuild: bool = False) -> LocalWriter:
        index_dir = Path(index_dir)
        remove_leftovers(index_dir)
        if not (index_dir / "manifest.json").exists():
            return cls(index_dir, expected, None, None)
        if rebuild:
            return cls(index_dir, expected, None, "rebuild requested")
        try:
            previous = LocalStore.open(index_dir)
        except IndexUnavailable as exc:
            return cls(index_dir, expected, None, f"previous index unreadable ({exc})")
        for key in SETTINGS_KEYS:
            if previous.manifest.get(key) != expected.get(key):
                return cls(index_dir, expected, None, f"{key} changed")
        return cls(index_dir, expected, previous, None)

    @property
    def rebuilt(self) -> str | None:
        return self._rebuilt

    def digests(self) -> dict[str, str]:
        return {d: e["hash"] for d, e in self.catalog.items()}

    def current(self) -> str:
        return published_version(self.index_dir) or ""

    def upsert(self, records: Iterable[DocumentRecord]) -> None:
        for record in records:
            doc_id = record.document.doc_id
            self._kill(doc_id)
            if self.builder is None:
                sid = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)
                path = segments_dir(self.index_dir) / f"{TMP_PREFIX}{sid}"
                self.builder = SegmentBuilder(
                    path, sid, self.dims, avgdl=self.avgdl, chunk_models=self.chunk_models
                )
            self.builder.add([record])
            self.catalog[doc_id] = {
                "hash": record.digest,
                "kind": record.document.kind,
                "chunks": len(record.chunks),
                "segment": self.builder.id,
            }
            self.changed = True

    def delete(self, doc_ids: Iterable[str]) -> None:
        for doc_id in doc_ids:
            if doc_id in self.catalog:
                self._kill(doc_id)
                self.changed = True

    def _kill(self, doc_id: str) -> None:
        """The stored copy of ``doc_id`` stops being live; its terms leave the document frequencies."""
        entry = self.catalog.pop(doc_id, None)
        if entry is None:
            return
        if self.builder is not None and entry["segment"] == self.builder.id:
            chunks = self.builder.chunks_of(doc_id)
        else:
            seg = self._segments[entry["segment"]]
            first, end = seg.document_range(doc_id)
            chunks = [seg.chunk(r) for r in range(first, end)]
        for chunk in chunks:
            self.dead_df.update(term_counts(indexed_text(chunk)).keys())

    def publish(self) -> str:
        """Finish the new segment, merge when the policy says so, and swap the new version in."""
        if self.builder is not None:
            self.builder.finish()
            final = segments_dir(self.index_dir) / self.builder.id
            self.builder.path.rename(final)
            self.segment_ids.append(self.builder.id)
            self._segments[self.builder.id] = Segment(final)
            if self.avgdl is None:
                self.avgdl = self._segments[self.builder.id].avgdl
            self.builder = None
        self.segment_ids = [
            s for s in self.segment_ids if any(e["segment"] == s for e in self.catalog.values())
        ]
        if self._should_merge():
            self._merge()
        return self._write_version()

    def _should_merge(self) -> bool:
        live = sum(e["chunks"] for e in self.catalog.values())
        total = sum(self._segments[s].rows for s in self.segment_ids)
        if len(self.segment_ids) <= 1 and total == live:
            return False
        if live < INDEX.store.merge_below:
            return True  # a small store stays one segment: the same results as a fresh build
        first = self._segments[self.segment_ids[0]].rows if self.segment_ids else 0
        return len(self.segment_ids) > INDEX.store.max_segments or (total - first) + (total - live) > (
            INDEX.store.merge_share * live
        )

    def _merge(self) -> None:
        """One segment from every live document, in document-id order, from the stored vectors."""
        sid = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3) + "-merged"
        path = segments_dir(self.index_dir) / f"{TMP_PREFIX}{sid}"
        builder = SegmentBuilder(path, sid, self.dims, avgdl=None, chunk_models=self.chunk_models)
        batch: list[DocumentRecord] = []
        for doc_id in sorted(self.catalog):
            batch.append(self._stored(doc_id))
            if len(batch) >= 512:
                builder.add(batch)
                batch = []
        builder.add(batch)
        builder.finish()
        final = segments_dir(self.index_dir) / sid
        path.rename(final)
        self._segments[sid] = Segment(final)
        self.segment_ids = [sid]
        self.avgdl = self._segments[sid].avgdl
        self.dead_df = Counter()
        for entry in self.catalog.values():
            entry["segment"] = sid

    def _stored(self, doc_id: str) -> DocumentRecord:
        seg = self._segments[self.catalog[doc_id]["segment"]]
        first, end = seg.document_range(doc_id)
        local = np.arange(first, end)
        units = seg.unit_index(local)
        unit_rows = seg.unit_rows(units) - first
        return DocumentRecord(
            document=seg.document(doc_id),
            chunks=[seg.chunk(r) for r in local.tolist()],
            digest=self.catalog[doc_id]["hash"],
            units=[
                (int(r), int(a), int(b))
                for r, a, b in zip(unit_rows, seg.unit_start[units], seg.unit_end[units], strict=True)
            ],
            vectors={m: seg.chunk_vectors(m, local) for m in seg.chunk_models},
            unit_vectors={m: seg.sentence_vectors(m, units) for m in seg.dims},
        )

    def _write_version(self) -> str:
        version = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)
        versions = versions_dir(self.index_dir)
        versions.mkdir(parents=True, exist_ok=True)
        tmp = versions / f"{TMP_PREFIX}{version}"
        tmp.mkdir()
        segments = [self._segments[s] for s in self.segment_ids]
        live_units = 0
        for seg in segments:
            for doc_id, (first, count, _) in seg.docs.items():
                entry = self.catalog.get(doc_id)
                if entry is not None and entry["segment"] == seg.id:
                    live_units += int(seg.unit_first[first + count] - seg.unit_first[first])
        manifest = {
            **self.expected,
            "version": version,
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "segments": self.segment_ids,
            "avgdl": self.avgdl,
            "documents": {d: self.catalog[d] for d in sorted(self.catalog)},
            "counts": {
                "documents": len(self.catalog),
                "chunks": sum(e["chunks"] for e in self.catalog.values()),
                "sentences": live_units,
            },
        }
        (tmp / "manifest.json").write_text(
            json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8"
        )
        (tmp / "dead-df.json").write_text(
            json.dumps(dict(self.dead_df), ensure_ascii=False), encoding="utf-8"
        )
        (tmp / "version.txt").write_text(version + "\n", encoding="utf-8")
        (tmp / "segments.json").write_text(json.dumps(self.segment_ids), encoding="utf-8")
        final = versions / version
        tmp.rename(final)
        # a plain folder from elsewhere in the way is set aside among the versions
        install_link(self.index_dir, final, set_aside=versions / f"adopted-{secrets.token_hex(3)}")
        _prune(self.index_dir, keep=final)
        self.changed = False
        return version

    def close(self) -> None:
        if self.builder is not None:
            self.builder.abandon()
            self.builder = None


def _prune(index_dir: Path, keep: Path) -> None:
    """Keep the newest few versions, and the segments they use."""
    versions = versions_dir(index_dir)
    old = sorted(
        (p for p in versions.iterdir() if p.is_dir() and not p.name.startswith(".") and p != keep),
        key=lambda p: p.stat().st_mtime,
    )
    for path in old[: max(0, len(old) - (KEEP_VERSIONS - 1))]:
        shutil.rmtree(path, ignore_errors=True)
    used: set[str] = set()
    for path in versions.iterdir():
        try:
            used.update(json.loads((path / "segments.json").read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    for seg in segments_dir(index_dir).iterdir():
        if seg.is_dir() and not seg.name.startswith(".") and seg.name not in used:
            shutil.rmtree(seg, ignore_errors=True)


def remove_leftovers(index_dir: Path) -> None:
    """What a crashed writer left: half-written versions and segments, and the link it had not yet
    swapped in. Called under the writer lock, so nothing here belongs to a live writer."""
    for folder in (versions_dir(index_dir), segments_dir(index_dir)):
        for tmp in folder.glob(f"{TMP_PREFIX}*"):
            shutil.rmtree(tmp, ignore_errors=True)
    segments_dir(index_dir).mkdir(parents=True, exist_ok=True)
    for link in index_dir.parent.glob(f".{index_dir.name}.link-*"):
        if link.is_symlink():
            link.unlink(missing_ok=True)
