"""One contract for every store (kb/store.py), run unchanged against each: the local index folder and Milvus
(Milvus Lite here), each exact (a small corpus: every row scored) and approximate (``-ann``: as above
``INDEX.store.exact_below``, candidates from the store's searches). ``-k milvus`` runs the Milvus side only.

The corpus is built by hand: English and Chinese, article, FAQ and thread, a disputed comment and one
that only asks, with deterministic unit vectors for two fake models whose ids hold characters Milvus
field names may not."""

from __future__ import annotations

import hashlib
import importlib.util
import re
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

from kb.config import Settings
from kb.lexical import Bm25Index, idf, term_counts
from kb.store import DocumentRecord, IndexUnavailable, Store, StoreWriter, chunk_models, indexed_text
from kb.stores import current_version, open_store, open_writer
from kb.text import tokenize
from kb.tuning import INDEX
from kb.types import Chunk, Document, Provenance, chunk_id_for

MODELS = (("fake/a:8", 8), ("fake b@12", 12))
LITE = importlib.util.find_spec("milvus_lite") is not None
needs_lite = pytest.mark.skipif(not LITE, reason="milvus-lite is not installed")
STORES = [
    pytest.param("local", id="local"),
    pytest.param("local-ann", id="local-ann"),
    pytest.param("milvus", id="milvus", marks=needs_lite),
    pytest.param("milvus-ann", id="milvus-ann", marks=needs_lite),
]


@dataclass(frozen=True)
class FakeEmbedder:
    model_id: str
    dim: int
    multilingual: bool = True


EMBEDDERS = [FakeEmbedder(m, d) for m, d in MODELS]
SENTENCE = re.compile(r"\S[^.。!?！？]*[.。!?！？]?")


def unit(key: str, dim: int) -> np.ndarray:
    seed = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")
    v = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return v / np.linalg.norm(v)


def record(
    doc_id: str, kind: str, lang: str, parts: list[tuple[str, dict]], salt: str = ""
) -> DocumentRecord:
    """A document whose chunks are ``parts`` joined by blank lines; its answer units are their sentences."""
    text = "\n\n".join(p for p, _ in parts)
    chunks, units, at = [], [], 0
    for i, (piece, extra) in enumerate(parts):
        chunk = Chunk(chunk_id_for(doc_id, piece), doc_id, kind, piece, at, at + len(piece), lang, **extra)
        chunks.append(chunk)
        units += [(i, at + m.start(), at + m.end()) for m in SENTENCE.finditer(piece)]
        at += len(piece) + 2
    document = Document(doc_id, kind, f"Title of {doc_id}", lang, text, url=f"https://example.com/{doc_id}")
    return DocumentRecord(
        document=document,
        chunks=chunks,
        digest=hashlib.sha256(text.encode()).hexdigest()[:16],
        units=units,
        vectors={m: np.stack([unit(f"{m}|{c.chunk_id}{salt}", d) for c in chunks]) for m, d in MODELS},
        unit_vectors={
            m: np.stack([unit(f"{m}|{doc_id}|{a}|{b}{salt}", d) for _, a, b in units]) for m, d in MODELS
        },
    )


POST = "Migrating an old m4 fleet to C5. Anyone done this?"
WRONG = "Just change the instance type, no driver needed. It works instantly."
RECORDS = [
    record(
        "article/nitro.en",
        "article",
        "en",
        [
            ("Nitro is the hypervisor of C5 instances. It replaces Xen.", {"section": "Nitro"}),
            (
                "Enhanced networking needs the ENA driver. Install it before you migrate.",
                {"context": "Networking"},
            ),
            ("Storage is exposed as NVMe devices. Device names change from xvda to nvme0n1.", {}),
        ],
    ),
    record(
        "faq/nitro.zh",
        "faq",
        "zh",
        [
            ("C5 实例使用 Nitro 虚拟化。迁移前请安装 ENA 驱动。", {"context": "C5 用什么虚拟化？"}),
            ("存储设备显示为 NVMe。设备名称会改变。", {"context": "磁盘名称会变吗？"}),
        ],
    ),
    record(
        "faq/ena.en",
        "faq",
        "en",
        [
            (
                "Check ENA support with modinfo ena. The driver must load at boot.",
                {"context": "How do I verify ENA?"},
            )
        ],
    ),
    record(
        "threads/t1",
        "thread",
        "en",
        [
            (POST, {"section": "C5 migration", "origin": Provenance(author="op")}),
            (
                WRONG,
                {
                    "context": POST,
                    "origin": Provenance(comment_id="c1", parent_id="t3_t1", disputed_by=("c2",)),
                },
            ),
            (
                "Wrong: without the ENA driver the instance never boots. Check first.",
                {
                    "context": "Just change the type",
                    "origin": Provenance(comment_id="c2", parent_id="t1_c1", corrects=("c1",)),
                },
            ),
            (
                "Does hibernation survive the migration?",
                {"context": POST, "origin": Provenance(comment_id="c3", parent_id="t3_t1", asks=True)},
            ),
        ],
    ),
]
NEW_ARTICLE = record(
    "article/nitro.en",
    "article",
    "en",
    [("Nitro offloads networking to dedicated cards. Graviton came later.", {"section": "Nitro"})],
    salt="v2",
)
NEW_FAQ = record(
    "faq/quokka.en",
    "faq",
    "en",
    [("Quokka questions are answered here. Nothing else is.", {"context": "Quokka?"})],
)
QUERIES = [
    "ENA driver",
    "Nitro hypervisor C5",
    "NVMe 设备名称",
    "迁移 ENA 驱动",
    "hibernation migration",
    "xvda",
    "zzzunknown",
]


@pytest.fixture(scope="module")
def milvus_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One Milvus Lite file (and server) for the module; each test has collections of its own."""
    return tmp_path_factory.mktemp("milvus") / "milvus.db"


@pytest.fixture(params=STORES)
def settings(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    kind = request.param
    if kind.endswith("-ann"):  # every store is past the size where each question scores every row
        monkeypatch.setitem(vars(INDEX.store), "exact_below", 0)
    if kind.startswith("milvus"):
        import kb.milvus_rows
        import kb.milvus_schema
        import kb.milvus_store
        import kb.milvus_versions
        import kb.milvus_writer

        modules = (kb.milvus_schema, kb.milvus_rows, kb.milvus_store, kb.milvus_writer, kb.milvus_versions)

        small_batches = {
            "INSERT_ROWS": 7,
            "IDS_PER_QUERY": 5,
            "GROUP_CHUNKS": 50,
            "WINDOW": 9,
            "VECTOR_WINDOW": 4,
        }
        for name, small in small_batches.items():  # small batches, so this corpus crosses every boundary
            for module in modules:  # each module reads the copy it imported
                if hasattr(module, name):
                    monkeypatch.setattr(module, name, small)
        db = request.getfixturevalue("milvus_db")
        collection = f"t{uuid.uuid4().hex[:12]}"
        return Settings(
            index_dir=tmp_path / "index", store="milvus", milvus_uri=str(db), milvus_collection=collection
        )
    return Settings(index_dir=tmp_path / "index", store="local")


@pytest.fixture
def restart(settings: Settings):
    """What a new process finds: for Milvus Lite, a server started afresh from its files."""

    def again() -> None:
        if settings.store == "milvus":
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(settings.milvus_uri)

    return again


def write(
    settings: Settings, upsert: list[DocumentRecord] = (), delete: list[str] = (), embedders=EMBEDDERS
) -> str:
    writer = open_writer(settings, embedders, parser_version="test")
    try:
        writer.upsert(list(upsert))
        writer.delete(list(delete))
        return writer.publish()
    finally:
        writer.close()


@pytest.fixture
def built(settings: Settings) -> str:
    return write(settings, RECORDS)


@pytest.fixture
def store(settings: Settings, built: str):
    opened = open_store(settings)
    yield opened
    opened.close()


def live_chunks(store: Store) -> list[Chunk]:
    return [store.chunk(int(r)) for r in store.live_rows()]


def reference_bm25(store: Store) -> Bm25Index:
    lexical = INDEX.lexical
    return Bm25Index.build([indexed_text(c) for c in live_chunks(store)], lexical.cjk, lexical.k1, lexical.b)


def snapshot(store: Store) -> dict:
    """Everything a reader can observe, for comparing two moments of one store."""
    rows = store.live_rows()
    probe = RECORDS[0].vectors
    sentences = store.sentences(rows)
    return {
        "version": store.version,
        "counts": store.manifest["counts"],
        "ids": store.document_ids(),
        "digests": store.digests(),
        "documents": {d: store.document(d) for d in store.document_ids()},
        "rows": {d: store.document_rows(d).tolist() for d in store.document_ids()},
        "chunks": [c.to_dict() for c in live_chunks(store)],
        "live": rows.tolist(),
        "langs": store.langs(rows).tolist(),
        "kinds": store.kinds(rows).tolist(),
        "dense": [_scored(store.dense_search(m, probe[m][i], 3)) for m, _ in MODELS for i in range(3)],
        "lexical": [_scored(store.lexical_search(q, 5)) for q in QUERIES],
        "scores": [np.round(store.lexical_scores(q, rows), 4).tolist() for q in QUERIES],
        "sentences": [
            sentences.sid.tolist(),
            sentences.row.tolist(),
            sentences.start.tolist(),
            sentences.end.tolist(),
        ],
        "weights": [round(store.term_weight(t), 5) for t in ("ena", "nitro", "quokka", "xvda")],
        "stated": [store.stated(t) for t in ("ena", "quokka", "xvda", "instant")],
        "sample": store.sample_rows().tolist(),
    }


def _scored(scored) -> list:
    return [scored.rows.tolist(), np.round(scored.scores, 4).tolist()]


def exact_store(settings: Settings) -> bool:
    return INDEX.store.exact_below > 0


# ---------------------------------------------------------------- publishing and versions


def test_nothing_is_visible_before_the_first_publish(settings: Settings) -> None:
    writer = open_writer(settings, EMBEDDERS, parser_version="test")
    try:
        writer.upsert(RECORDS)
        assert writer.digests() == {r.document.doc_id: r.digest for r in RECORDS}
        assert current_version(settings) is None
        with pytest.raises(IndexUnavailable, match="kbq ingest"):
            open_store(settings)
    finally:
        writer.close()
    assert current_version(settings) is None
    with pytest.raises(IndexUnavailable, match="kbq ingest"):
        open_store(settings)
    writer = open_writer(settings, EMBEDDERS, parser_version="test")
    try:  # the dropped first build left nothing behind
        assert writer.digests() == {}
        version = writer.publish()
    finally:
        writer.close()
    store = open_store(settings)
    try:
        assert store.version == version and store.size() == 0 and store.document_ids() == []
        assert store.lexical_search("ENA", 5).rows.tolist() == []
    finally:
        store.close()


def test_publish_shows_everything_at_once_under_a_new_version(settings: Settings) -> None:
    writer = open_writer(settings, EMBEDDERS, parser_version="test")
    try:
        writer.upsert(RECORDS[:2])
        writer.upsert(RECORDS[2:])
        first = writer.publish()
        assert writer.current() == first == current_version(settings)
        second = writer.publish()
    finally:
        writer.close()
    assert second != first and current_version(settings) == second
    store = open_store(settings)
    try:
        assert store.version == second and store.manifest["version"] == second
        chunks = sum(len(r.chunks) for r in RECORDS)
        units = sum(len(r.units) for r in RECORDS)
        assert store.manifest["counts"] == {"documents": len(RECORDS), "chunks": chunks, "sentences": units}
        assert store.size() == chunks == len(store.live_rows())
        assert [e["id"] for e in store.manifest["embedders"]] == [m for m, _ in MODELS]
    finally:
        store.close()


def test_unpublished_changes_stay_invisible_and_a_closed_writer_drops_them(
    settings: Settings, store: Store
) -> None:
    before = snapshot(store)
    writer = open_writer(settings, EMBEDDERS, parser_version="test")
    try:
        writer.upsert([NEW_ARTICLE, NEW_FAQ])
        writer.delete(["faq/nitro.zh"])
        assert set(writer.digests()) == {"article/nitro.en", "faq/ena.en", "threads/t1", "faq/quokka.en"}
        assert current_version(settings) == before["version"]
        during = open_store(settings)
        try:
            assert snapshot(during) == before
        finally:
            during.close()
    finally:
        writer.close()
    assert current_version(settings) == before["version"]
    after = open_store(settings)
    try:
        assert snapshot(after) == before
    finally:
        after.close()
    assert snapshot(store) == before
    version = write(settings)  # the next writer publishes what was published, not what was dropped
    again = open_store(settings)
    try:
        assert again.version == version != before["version"]
        assert {k: v for k, v in snapshot(again).items() if k not in ("version", "sample")} == {
            k: v for k, v in before.items() if k not in ("version", "sample")
        }
    finally:
        again.close()


def test_a_store_keeps_serving_its_version_after_later_publishes(settings: Settings, store: Store) -> None:
    before = snapshot(store)
    write(settings, [NEW_ARTICLE, NEW_FAQ], ["faq/nitro.zh"])
    latest = write(settings, [RECORDS[2]])  # a second version: an older reader may be two behind
    assert current_version(settings) == latest != before["version"]
    assert snapshot(store) == before
    newer = open_store(settings)
    try:
        assert newer.version == latest and "faq/quokka.en" in newer.document_ids()
        assert "faq/nitro.zh" not in newer.document_ids()
    finally:
        newer.close()


def test_a_restart_keeps_the_published_index_and_undoes_an_interrupted_writer(
    settings: Settings, built: str, restart
) -> None:
    store = open_store(settings)
    before = snapshot(store)
    store.close()
    restart()
    assert current_version(settings) == built
    again = open_store(settings)
    try:
        assert snapshot(again) == before
    finally:
        again.close()
    writer = open_writer(settings, EMBEDDERS, parser_version="test")
    writer.upsert([NEW_ARTICLE, NEW_FAQ])
    writer.delete(["faq/nitro.zh"])
    restart()  # the writer's process ended here: its changes were neither published nor dropped
    version = write(settings)
    store = open_store(settings)
    try:
        assert store.version == version != built
        unchanged = {k: v for k, v in snapshot(store).items() if k not in ("version", "sample")}
        assert unchanged == {k: v for k, v in before.items() if k not in ("version", "sample")}
    finally:
        store.close()


# ---------------------------------------------------------------- what a version holds


def test_documents_and_chunks_round_trip(store: Store) -> None:
    assert store.document_ids() == sorted(r.document.doc_id for r in RECORDS)
    assert store.digests() == {r.document.doc_id: r.digest for r in RECORDS}
    rows = []
    for r in RECORDS:
        assert store.document(r.document.doc_id) == r.document
        doc_rows = store.document_rows(r.document.doc_id)
        assert doc_rows.dtype == np.int64 and list(doc_rows) == sorted(doc_rows)
        assert [store.chunk(int(x)).to_dict() for x in doc_rows] == [c.to_dict() for c in r.chunks]
        rows += doc_rows.tolist()
    assert sorted(rows) == store.live_rows().tolist()
    assert store.document("faq/missing") is None
    assert store.document_rows("faq/missing").tolist() == []


def test_langs_kinds_exact_flag_and_live_rows(settings: Settings, store: Store) -> None:
    rows = store.live_rows()
    assert rows.tolist() == sorted(set(rows.tolist())) and store.size() == len(rows) == 10
    chunks = live_chunks(store)
    assert store.langs(rows).tolist() == [c.lang for c in chunks]
    assert store.kinds(rows).tolist() == [c.kind for c in chunks]
    assert store.langs(rows[::-1][:3]).tolist() == [c.lang for c in chunks[::-1][:3]]
    assert store.exact is exact_store(settings)
    assert store.dims == dict(MODELS) and list(store.dims) == [m for m, _ in MODELS]


def test_sample_rows_are_live_rows(store: Store) -> None:
    sample = store.sample_rows()
    live = store.live_rows().tolist()
    assert sample.tolist() == sorted(set(sample.tolist())) and set(sample.tolist()) <= set(live)
    assert len(sample) == min(len(live), 2048)  # this corpus is smaller than any sample
    assert store.sample_rows().tolist() == sample.tolist()


def test_sentences_of_rows(store: Store) -> None:
    by_chunk = {c.chunk_id: (r, i) for r in RECORDS for i, c in enumerate(r.chunks)}
    rows = store.live_rows()[[1, 4, 5, 8]]
    got = store.sentences(rows)
    assert len(got) == len(got.sid) == len(got.row) == len(got.start) == len(got.end)
    assert got.sid.tolist() == sorted(set(got.sid.tolist())) and got.row.tolist() == sorted(got.row.tolist())
    expected = []
    for row in rows.tolist():
        rec, i = by_chunk[store.chunk(row).chunk_id]
        for j, (ci, a, b) in enumerate(rec.units):
            if ci == i:
                expected.append((row, a, b, {m: rec.unit_vectors[m][j] for m, _ in MODELS}))
    assert list(zip(got.row.tolist(), got.start.tolist(), got.end.tolist(), strict=True)) == [
        e[:3] for e in expected
    ]
    for m, d in MODELS:
        assert got.vectors[m].shape == (len(expected), d)
        # float16 on disk is allowed (INDEX.store.sentence_dtype)
        np.testing.assert_allclose(got.vectors[m], np.stack([e[3][m] for e in expected]), atol=1e-3)
    every = store.sentences(store.live_rows())
    assert len(every) == sum(len(r.units) for r in RECORDS)
    assert set(got.sid.tolist()) <= set(every.sid.tolist())
    empty = store.sentences(np.zeros(0, np.int64))
    assert len(empty) == 0 and {m: v.shape for m, v in empty.vectors.items()} == {
        m: (0, d) for m, d in MODELS
    }


# ---------------------------------------------------------------- dense


def test_dense_search_finds_the_nearest_rows_with_exact_cosines(store: Store) -> None:
    rows = store.live_rows()
    chunks = live_chunks(store)
    vectors = {c.chunk_id: (r, i) for r in RECORDS for i, c in enumerate(r.chunks)}
    for m, d in MODELS:
        matrix = np.stack([vectors[c.chunk_id][0].vectors[m][vectors[c.chunk_id][1]] for c in chunks])
        query = matrix[4] + 0.3 * unit(f"noise{m}", d)
        query = query / np.linalg.norm(query)  # callers pass unit vectors (kb.store.Store.dense_search)
        cosines = matrix @ query
        found = store.dense_search(m, query, 3)
        best = rows[np.argsort(-cosines)[:3]]
        assert found.rows.tolist() == sorted(found.rows.tolist())
        assert int(rows[np.argmax(cosines)]) in found.rows.tolist()
        if store.exact:
            assert found.rows.tolist() == sorted(best.tolist())
        np.testing.assert_allclose(found.scores, cosines[np.searchsorted(rows, found.rows)], atol=1e-5)
        assert found.scores.dtype == np.float32 and found.rows.dtype == np.int64
        np.testing.assert_allclose(store.dense_scores(m, query, rows), cosines, atol=1e-5)
        picked = rows[[7, 0, 3]]
        np.testing.assert_allclose(store.dense_scores(m, query, picked), cosines[[7, 0, 3]], atol=1e-5)
        assert set(store.dense_search(m, query, 100).rows.tolist()) <= set(rows.tolist())


# ---------------------------------------------------------------- lexical


def test_lexical_scores_equal_a_fresh_bm25_build(store: Store) -> None:
    reference = reference_bm25(store)
    rows = store.live_rows()
    for query in QUERIES:
        np.testing.assert_allclose(store.lexical_scores(query, rows), reference.scores(query), atol=1e-4)
        picked = rows[[9, 2, 5]]
        np.testing.assert_allclose(
            store.lexical_scores(query, picked), reference.scores(query)[[9, 2, 5]], atol=1e-4
        )
    for term in [*reference.vocab, "zzzunknown"]:
        assert store.term_weight(term) == pytest.approx(reference.term_weight(term), abs=1e-5), term


def test_lexical_search_returns_only_rows_sharing_a_term_best_first(store: Store) -> None:
    reference = reference_bm25(store)
    rows = store.live_rows()
    for query in QUERIES:
        scores = reference.scores(query)
        sharing = scores > 0
        found = store.lexical_search(query, 3)
        assert found.rows.tolist() == sorted(found.rows.tolist())
        assert set(found.rows.tolist()) <= set(rows[sharing].tolist())
        assert len(found.rows) == min(3, int(sharing.sum()))
        np.testing.assert_allclose(found.scores, scores[np.searchsorted(rows, found.rows)], atol=1e-4)
        if len(found.rows):  # the best ones: nothing left out scores higher than what was returned
            assert (
                scores[np.searchsorted(rows, found.rows)].min()
                >= np.delete(scores, np.searchsorted(rows, found.rows)).max() - 1e-4
            )
        everything = store.lexical_search(query, 100)
        assert everything.rows.tolist() == rows[sharing].tolist()
    assert len(store.lexical_search("zzzunknown", 5).rows) == 0


def test_stated_terms_come_from_quotable_chunks_and_their_context(store: Store) -> None:
    (ena,) = tokenize("ENA")
    (verify,) = tokenize("verify")  # only in an FAQ entry's question (its context)
    (instantly,) = tokenize("instantly")  # only in the disputed comment
    (hibernation,) = tokenize("hibernation")  # only in the comment that asks
    assert store.stated(ena) and store.stated(verify) and store.stated("什么")
    assert not store.stated(instantly) and not store.stated(hibernation) and not store.stated("zzzunknown")
    assert store.term_weight(instantly) > store.term_weight(ena)  # the disputed comment is still searchable
    assert len(store.lexical_search("instantly", 5).rows) == 1
    if store.exact:  # exact stores also find a name inside a longer token
        assert store.stated("nvme0n1") and store.stated("nvme0", inside=True) and not store.stated("nvme0")


# ---------------------------------------------------------------- changes


def test_replacing_a_document_removes_its_old_rows_everywhere(settings: Settings, store: Store) -> None:
    """Rows name chunks within one version, so the old copy is looked for by chunk id."""
    old = {c.chunk_id for c in RECORDS[0].chunks}
    write(settings, [NEW_ARTICLE])
    new = open_store(settings)
    try:

        def ids(rows) -> set[str]:
            return {new.chunk(int(r)).chunk_id for r in rows}

        live = new.live_rows()
        assert (
            not ids(live) & old and len(live) == 10 - 3 + 1 == new.size() == new.manifest["counts"]["chunks"]
        )
        rows = new.document_rows("article/nitro.en")
        assert set(rows.tolist()) <= set(live.tolist())
        assert [new.chunk(int(r)).to_dict() for r in rows] == [c.to_dict() for c in NEW_ARTICLE.chunks]
        assert new.document("article/nitro.en") == NEW_ARTICLE.document
        assert new.digests()["article/nitro.en"] == NEW_ARTICLE.digest
        for m, _ in MODELS:
            for vector in RECORDS[0].vectors[m]:
                assert not ids(new.dense_search(m, vector, 100).rows) & old
        assert len(new.lexical_search("xvda", 10).rows) == 0
        assert not new.lexical_scores("xvda nvme0n1", live).any()
        assert ids(new.lexical_search("graviton", 10).rows) == {NEW_ARTICLE.chunks[0].chunk_id}
        every = new.sentences(live)
        assert (
            set(every.row.tolist()) <= set(live.tolist())
            and len(every) == new.manifest["counts"]["sentences"]
        )
        assert set(new.sample_rows().tolist()) <= set(live.tolist())
    finally:
        new.close()


def test_delete_and_term_weights_over_live_rows(settings: Settings, store: Store) -> None:
    write(settings, [NEW_ARTICLE, NEW_FAQ], ["faq/nitro.zh", "faq/missing"])
    new = open_store(settings)
    try:
        ids = ["article/nitro.en", "faq/ena.en", "faq/quokka.en", "threads/t1"]
        assert new.document_ids() == ids and sorted(new.digests()) == ids
        assert new.document("faq/nitro.zh") is None and new.document_rows("faq/nitro.zh").tolist() == []
        chunks = live_chunks(new)
        assert len(chunks) == new.size() == new.manifest["counts"]["chunks"] == 1 + 1 + 1 + 4
        assert new.manifest["counts"]["documents"] == 4
        assert not {c.doc_id for c in chunks} & {"faq/nitro.zh"}
        df: dict[str, int] = {}
        for c in chunks:
            for t in term_counts(indexed_text(c)):
                df[t] = df.get(t, 0) + 1
        for term in [*df, "设备", "xvda", "zzzunknown"]:
            expected = float(idf(df.get(term) or 1, len(chunks)))
            assert new.term_weight(term) == pytest.approx(expected, abs=1e-5), term
        (quokka,) = tokenize("quokka")
        assert new.stated(quokka) and not new.stated("设备")
        if new.exact:  # a small store scores as a fresh build of its live chunks
            reference = reference_bm25(new)
            for query in QUERIES + ["quokka nitro"]:
                np.testing.assert_allclose(
                    new.lexical_scores(query, new.live_rows()), reference.scores(query), atol=1e-4
                )
    finally:
        new.close()


def test_many_documents_in_one_upsert(settings: Settings) -> None:
    """A bulk load: hundreds of records per call, replaced wholesale by a second call."""
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]

    def bulk(salt: str) -> list[DocumentRecord]:
        return [
            record(
                f"bulk/{i:04d}",
                "faq",
                "en",
                [(f"Entry {i} {words[i % 8]} {words[i * 3 % 8]} {salt}. Done.", {})],
                salt,
            )
            for i in range(240)
        ]

    write(settings, bulk("first"))
    write(settings, bulk("second")[:200], [f"bulk/{i:04d}" for i in range(200, 240, 2)])
    store = open_store(settings)
    try:
        assert store.size() == 220 == len(store.document_ids())
        chunks = live_chunks(store)
        assert sum("second" in c.text for c in chunks) == 200 and sum("first" in c.text for c in chunks) == 20
        assert len(store.sentences(store.live_rows())) == 440
        assert len(store.lexical_search("first", 100).rows) == 20
        if store.exact:
            reference = reference_bm25(store)
            np.testing.assert_allclose(
                store.lexical_scores("alpha second", store.live_rows()),
                reference.scores("alpha second"),
                atol=1e-4,
            )
    finally:
        store.close()


# ---------------------------------------------------------------- configuration


def test_an_index_built_with_other_embedders_names_the_fix(settings: Settings, built: str) -> None:
    with pytest.raises(IndexUnavailable, match="kbq ingest"):
        open_store(settings, model_ids=["other-model"])
    open_store(settings, model_ids=[m for m, _ in MODELS]).close()
    others = [FakeEmbedder("other-model", 8)]
    writer: StoreWriter = open_writer(settings, others, parser_version="test")
    try:
        assert writer.rebuilt == "embedders changed" and writer.digests() == {}
        assert writer.current() == built
    finally:
        writer.close()
    store = open_store(settings)  # the dropped rebuild changed nothing
    try:
        assert store.version == built and store.size() == 10
    finally:
        store.close()
    ena = RECORDS[2]
    vectors = {"other-model": np.stack([unit(f"other|{i}", 8) for i in range(len(ena.chunks))])}
    unit_vectors = {"other-model": np.stack([unit(f"other-unit|{i}", 8) for i in range(len(ena.units))])}
    version = write(settings, [replace(ena, vectors=vectors, unit_vectors=unit_vectors)], embedders=others)
    with pytest.raises(IndexUnavailable, match="kbq ingest"):
        open_store(settings, model_ids=[m for m, _ in MODELS])
    store = open_store(settings, model_ids=["other-model"])
    try:
        assert (
            store.version == version
            and store.document_ids() == ["faq/ena.en"]
            and store.dims == {"other-model": 8}
        )
    finally:
        store.close()


def test_a_missing_index_names_the_fix(settings: Settings) -> None:
    assert current_version(settings) is None
    with pytest.raises(IndexUnavailable, match="kbq ingest"):
        open_store(settings)


def test_a_sentence_only_model_has_sentence_vectors_and_no_chunk_vectors(settings: Settings, restart) -> None:
    """The relevance model embeds answer units only (kb.store.chunk_models): its sentence vectors are stored
    and read back through upserts, deletes and a restart, while dense search runs on the other models."""
    relevance = FakeEmbedder("fake/rel:6", 6)

    def with_relevance(rec: DocumentRecord) -> DocumentRecord:
        units = {
            relevance.model_id: np.stack(
                [unit(f"rel|{rec.document.doc_id}|{a}|{b}", 6) for _, a, b in rec.units]
            )
        }
        return replace(rec, unit_vectors={**rec.unit_vectors, **units})

    def write_all(upsert: list[DocumentRecord], delete: list[str] = ()) -> None:
        writer = open_writer(settings, [*EMBEDDERS, relevance], "test", sentence_only=[relevance.model_id])
        try:
            writer.upsert([with_relevance(r) for r in upsert])
            writer.delete(list(delete))
            writer.publish()
        finally:
            writer.close()

    write_all(RECORDS)
    write_all([NEW_ARTICLE, NEW_FAQ], delete=["faq/ena.en"])
    restart()
    store = open_store(settings, model_ids=[*(m for m, _ in MODELS), relevance.model_id])
    try:
        assert chunk_models(store.manifest) == [m for m, _ in MODELS]
        assert store.dims[relevance.model_id] == 6
        rows = store.live_rows()
        sentences = store.sentences(rows, [relevance.model_id])
        by_doc = {r.document.doc_id: with_relevance(r) for r in [*RECORDS, NEW_ARTICLE, NEW_FAQ]}
        expected = []
        for row in rows.tolist():
            chunk = store.chunk(int(row))
            rec = by_doc[chunk.doc_id]
            at = next(i for i, c in enumerate(rec.chunks) if c.chunk_id == chunk.chunk_id)
            expected += [
                rec.unit_vectors[relevance.model_id][j] for j, u in enumerate(rec.units) if u[0] == at
            ]
        np.testing.assert_allclose(sentences.vectors[relevance.model_id], np.stack(expected), atol=2e-3)
        probe = RECORDS[0].vectors[MODELS[0][0]][0]
        assert int(store.dense_search(MODELS[0][0], probe, 1).rows[0]) in rows.tolist()
        q = unit("q", 6)
        calls = (
            lambda: store.dense_search(relevance.model_id, q, 3),
            lambda: store.dense_scores(relevance.model_id, q, rows),
            lambda: store.chunk_vectors(relevance.model_id, rows),
        )
        for call in calls:
            with pytest.raises(ValueError, match="no chunk vectors"):
                call()
    finally:
        store.close()
    write_all([], delete=[r.document.doc_id for r in [*RECORDS, NEW_FAQ]])  # an empty store says the same
    store = open_store(settings)
    try:
        assert store.size() == 0
        with pytest.raises(ValueError, match="no chunk vectors"):
            store.dense_search(relevance.model_id, unit("q", 6), 3)
    finally:
        store.close()
