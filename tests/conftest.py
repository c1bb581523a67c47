"""Shared fixtures: the real corpus indexed once per session with the real embedding model."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from kb.config import Settings
from kb.local_store import copy_published

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "corpus"
MATERIAL = ROOT.parent / "shared" / "material"


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    return CORPUS


@pytest.fixture(scope="session")
def indexed_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings whose index was built from the real corpus (read-only: copy it before changing)."""
    from service.indexing import ingest

    settings = Settings(index_dir=tmp_path_factory.mktemp("kbq") / "index", corpus_dir=CORPUS)
    report, problems = ingest(settings)
    assert not problems and report.added
    return settings


@pytest.fixture(scope="session")
def kb(indexed_settings: Settings):  # type: ignore[no-untyped-def]
    from kb.knowledge import KnowledgeBase

    return KnowledgeBase.open(indexed_settings)


@pytest.fixture
def private_settings(indexed_settings: Settings, tmp_path: Path) -> Settings:
    """A writable copy of the session index and corpus, for tests that ingest or break things."""
    corpus = tmp_path / "corpus"
    shutil.copytree(CORPUS, corpus)
    index_dir = tmp_path / "kbq" / "index"
    index_dir.parent.mkdir()
    copy_published(indexed_settings.index_dir, index_dir)
    return Settings(index_dir=index_dir, corpus_dir=corpus)
