"""Opening the store ``KB_STORE`` names (the interface: kb/store.py)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path

from kb.config import Settings
from kb.embed import Embedder
from kb.local_store import LocalStore
from kb.local_store import published_version as local_version
from kb.local_writer import LocalWriter
from kb.store import Store, StoreWriter, build_settings


def open_store(
    settings: Settings, model_ids: Sequence[str] | None = None, reuse: Store | None = None
) -> Store:
    """The published index ``settings`` name; raises ``IndexUnavailable`` with a one-line fix.
    ``reuse``: the store this replaces, whose unchanged parts a new version may share."""
    if settings.store == "milvus":
        from kb.milvus_store import MilvusStore  # pymilvus loads only for a Milvus store

        return MilvusStore.open(settings, model_ids)
    previous = reuse if isinstance(reuse, LocalStore) else None
    return LocalStore.open(settings.index_dir, None if model_ids is None else list(model_ids), reuse=previous)


def open_writer(
    settings: Settings,
    embedders: Sequence[Embedder],
    parser_version: str,
    rebuild: bool = False,
    sentence_only: Collection[str] = (),
) -> StoreWriter:
    """A writer for the index ``settings`` name. The caller holds the writer lock (kb.indexer)."""
    expected = build_settings(embedders, parser_version, sentence_only)
    if settings.store == "milvus":
        from kb.milvus_writer import MilvusWriter

        return MilvusWriter.open(settings, expected, rebuild)
    return LocalWriter.open(settings.index_dir, expected, rebuild)


def current_version(settings_or_dir: Settings | Path) -> str | None:
    """The published version, cheaply, without loading anything (None when there is none)."""
    if isinstance(settings_or_dir, Path | str):
        return local_version(Path(settings_or_dir))
    if settings_or_dir.store == "milvus":
        from kb.milvus_schema import published_version as milvus_version

        return milvus_version(settings_or_dir)
    return local_version(settings_or_dir.index_dir)
