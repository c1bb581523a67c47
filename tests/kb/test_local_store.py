"""The local store above its exact threshold: IVF candidates, segments per upsert, merges, exact BM25
across segments. (What every store must do is in test_store_contract.py.)"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest

import kb.local_store
import kb.local_writer
import kb.row_file
import kb.segment
import kb.segment_builder
from kb.config import Settings
from kb.indexer import writer_lock
from kb.lexical import Bm25Index, idf
from kb.local_store import LocalStore
from kb.local_writer import LocalWriter
from kb.retrieve import Retriever
from kb.store import DocumentRecord, build_settings, indexed_text
from kb.tuning import INDEX
from kb.types import Chunk, Document, chunk_id_for

WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa".split()
DIM = 16
THRESHOLD = 200  # chunks: above it the store is approximate


class Encoder:
    """Question vectors: the unit vector of a hashed bag of words, like the documents'."""

    model_id, dim, multilingual = "test-bag-16", DIM, True

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        return np.stack([bag(t) for t in texts])


def bag(text: str) -> np.ndarray:
    v = np.zeros(DIM, np.float32)
    for w in text.split():
        v[WORDS.index(w) % DIM if w in WORDS else hash(w) % DIM] += 1.0
    return v / max(float(np.linalg.norm(v)), 1e-9)


def record(i: int, rng: np.random.Generator, words: int = 6) -> DocumentRecord:
    sentences = [" ".join(rng.choice(WORDS, size=words)) + "." for _ in range(3)]
    text = " ".join(sentences)
    doc = Document(f"article/doc{i:05d}", "article", f"doc {i}", "en", text)
    chunk = Chunk(chunk_id_for(doc.doc_id, text), doc.doc_id, "article", text, 0, len(text), "en")
    units, at = [], 0
    for s in sentences:
        units.append((0, at, at + len(s)))
        at += len(s) + 1
    return DocumentRecord(
        doc,
        [chunk],
        f"digest-{i}",
        units,
        {Encoder.model_id: bag(text)[None, :]},
        {Encoder.model_id: np.stack([bag(text[a:b]) for _, a, b in units])},
    )


@pytest.fixture
def small_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    store = dataclasses.replace(INDEX.store, exact_below=THRESHOLD, merge_below=THRESHOLD // 2)
    index = dataclasses.replace(INDEX, store=store)
    monkeypatch.setattr(kb.local_store, "INDEX", index)
    monkeypatch.setattr(kb.local_writer, "INDEX", index)
    monkeypatch.setattr(kb.segment, "INDEX", index)
    monkeypatch.setattr(kb.segment_builder, "INDEX", index)


def build(index_dir: Path, records: list[DocumentRecord]) -> str:
    with writer_lock(index_dir):
        writer = LocalWriter.open(index_dir, build_settings([Encoder()], "test"))
        try:
            writer.upsert(records)
            return writer.publish()
        finally:
            writer.close()


def test_a_large_store_answers_from_ivf_candidates_close_to_scoring_every_row(tmp_path, small_threshold):
    rng = np.random.default_rng(7)
    build(tmp_path / "index", [record(i, rng) for i in range(600)])
    store = LocalStore.open(tmp_path / "index")
    assert not store.exact and store.segments[0].ivf  # above the threshold: an IVF index was built
    retriever = Retriever(store, {Encoder.model_id: Encoder()})
    overlap = []
    for _ in range(30):
        query = " ".join(rng.choice(WORDS, size=3))
        approx = [h.row for h in retriever.search(query, k=10)]
        exact = [h.row for h in retriever.search(query, k=10, signals=retriever.signals(query, exact=True))]
        overlap.append(len(set(approx) & set(exact)) / 10)
    assert np.mean(overlap) >= 0.9


def test_an_upsert_adds_a_segment_and_bm25_stays_exact_over_the_live_rows(tmp_path, small_threshold):
    rng = np.random.default_rng(3)
    records = [record(i, rng) for i in range(400)]
    build(tmp_path / "index", records)
    changed = record(5, np.random.default_rng(99), words=9)
    build(tmp_path / "index", [changed])  # replaces doc 5: a new small segment, the old row dead
    store = LocalStore.open(tmp_path / "index")
    assert len(store.segments) == 2 and store.size() == 400
    live = [records[i] for i in range(400) if i != 5] + [changed]
    texts = {r.document.doc_id: indexed_text(r.chunks[0]) for r in live}
    reference = Bm25Index.build([texts[d] for d in sorted(texts)])  # avgdl differs only for the new row
    for term in ("alpha", "kilo", "papa"):
        df = sum(term in t.split() or f"{term}." in t.split() for t in texts.values())
        assert store.term_weight(term) == pytest.approx(float(idf(df, 400)), rel=1e-6)
        assert reference.term_weight(term) == pytest.approx(store.term_weight(term), rel=1e-6)
    rows = store.document_rows("article/doc00005")
    assert len(rows) == 1 and store.chunk(int(rows[0])).text == changed.chunks[0].text
    dense = store.dense_search(Encoder.model_id, bag(changed.chunks[0].text), 5)  # the new segment has no IVF
    assert int(rows[0]) in dense.rows.tolist() and dense.scores.max() == pytest.approx(1.0, abs=1e-5)
    found = store.lexical_search(changed.chunks[0].text, 400)
    assert int(rows[0]) in found.rows.tolist() and len(set(found.rows.tolist())) == len(found.rows)
    old_rows = set(range(400)) - set(store.live_rows().tolist())
    assert len(old_rows) == 1 and not old_rows & set(found.rows.tolist())


def test_a_small_store_merges_back_into_one_segment_equal_to_a_fresh_build(tmp_path):
    rng = np.random.default_rng(11)
    records = [record(i, rng) for i in range(50)]
    build(tmp_path / "a", records)
    changed = record(7, np.random.default_rng(5))
    build(tmp_path / "a", [changed])
    build(tmp_path / "b", [changed if r.document.doc_id == changed.document.doc_id else r for r in records])
    a, b = LocalStore.open(tmp_path / "a"), LocalStore.open(tmp_path / "b")
    assert len(a.segments) == 1 and a.exact
    query = "alpha kilo papa"
    assert np.array_equal(a.lexical_scores(query, a.live_rows()), b.lexical_scores(query, b.live_rows()))
    vector = bag(query)
    assert np.array_equal(
        a.dense_scores(Encoder.model_id, vector, a.live_rows()),
        b.dense_scores(Encoder.model_id, vector, b.live_rows()),
    )
    assert [c.chunk_id for _, c in a.iter_chunks()] == [c.chunk_id for _, c in b.iter_chunks()]


def test_an_unpublished_writer_changes_nothing_and_leaves_no_segment(tmp_path):
    rng = np.random.default_rng(1)
    version = build(tmp_path / "index", [record(i, rng) for i in range(5)])
    settings = Settings(index_dir=tmp_path / "index")
    with writer_lock(settings.index_dir):
        writer = LocalWriter.open(settings.index_dir, build_settings([Encoder()], "test"))
        writer.upsert([record(9, rng)])
        writer.delete(["article/doc00001"])
        writer.close()
    store = LocalStore.open(settings.index_dir)
    assert store.version == version and store.size() == 5
    assert not [
        p for p in kb.local_store.segments_dir(settings.index_dir).iterdir() if p.name.startswith(".")
    ]


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_a_row_file_reads_any_rows_as_float32_like_the_array_it_holds(tmp_path, dtype):
    matrix = np.random.default_rng(3).standard_normal((50, 7)).astype(dtype)
    path = tmp_path / "m.bin"
    matrix.tofile(path)
    rows = kb.row_file.RowFile(path, dtype, 50, 7)
    for wanted in ([3, 4, 5, 9, 10, 0, 49], [7], [], list(range(50)), [5, 5, 2]):
        got = rows[np.array(wanted, np.int64)]
        assert got.dtype == np.float32 and got.shape == (len(wanted), 7)
        assert np.array_equal(got, matrix[wanted].astype(np.float32))
    with pytest.raises(IndexError):
        rows[np.array([50])]
    rows.close()
    with pytest.raises(ValueError, match="not 51 rows"):
        kb.row_file.RowFile(path, dtype, 51, 7)


def test_a_large_store_keeps_its_vectors_out_of_the_process(tmp_path, small_threshold):
    """Above the threshold the vectors are read per question, not mapped (mapped pages count in RSS)."""
    rng = np.random.default_rng(5)
    build(tmp_path / "index", [record(i, rng) for i in range(260)])
    store = LocalStore.open(tmp_path / "index")
    assert not store.exact
    Retriever(store, {Encoder.model_id: Encoder()}).search("alpha bravo", k=5)
    maps = Path("/proc/self/maps").read_text()
    index = str(tmp_path.resolve())
    mapped = {Path(line.split()[-1]).name for line in maps.splitlines() if index in line}
    assert "lexical-data.npy" in mapped  # the postings are mapped: this sees the store's mappings
    assert not [name for name in mapped if name.startswith(("dense-", "units-"))], mapped


def test_a_row_file_finishes_reads_the_kernel_cut_short(tmp_path, monkeypatch):
    """A read returns at most ~2 GiB (less near a file's end or on a signal): the rest is read again."""
    matrix = np.arange(40 * 6, dtype=np.float32).reshape(40, 6)
    matrix.tofile(tmp_path / "m.f32")
    rows = kb.row_file.RowFile(tmp_path / "m.f32", np.float32, 40, 6)
    real = os.preadv

    def short(fd: int, buffers: list, offset: int) -> int:  # at most 10 bytes a call
        return real(fd, [memoryview(buffers[0])[:10]], offset)

    monkeypatch.setattr(kb.row_file.os, "preadv", short)
    assert np.array_equal(rows[np.arange(3, 30)], matrix[3:30])
    (tmp_path / "m.f32").write_bytes(b"")  # the file lost its rows: an error, not zeros
    with pytest.raises(OSError, match="missing"):
        rows[np.array([1])]
