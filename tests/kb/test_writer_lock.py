"""The index writer lock says who holds it and gives up after its timeout; what a crashed ingest left behind
is removed by the next one and never takes a retention slot."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ingest import PARSER_VERSION
from kb.fsutil import LockTimeout
from kb.indexer import update_index, writer_lock
from kb.local_store import read_manifest, segments_dir
from kb.local_writer import KEEP_VERSIONS
from kb.stores import current_version
from service.indexing import ingest
from tests.conftest import ROOT
from tests.kb.test_store import FakeEmbedder, _records

HOLD = """
import sys, time
from pathlib import Path
from kb.indexer import writer_lock
with writer_lock(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def hung_ingest(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A real process that takes the writer lock of ``tmp_path/index`` and hangs."""
    index_dir = tmp_path / "index"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(index_dir)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        yield index_dir, proc.pid
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_a_waiting_ingest_names_the_holder_and_gives_up(hung_ingest) -> None:  # type: ignore[no-untyped-def]
    index_dir, pid = hung_ingest
    heard: list[str] = []
    started = time.monotonic()
    with pytest.raises(LockTimeout) as caught:
        update_index(index_dir, [], [FakeEmbedder()], lock_timeout=1.0, on_wait=heard.append)
    waited = time.monotonic() - started
    assert 0.9 <= waited < 5
    assert len(heard) == 1 and f"process {pid} on " in heard[0] and "-c" in heard[0]
    message = str(caught.value)
    assert f"process {pid}" in message and "gave up after 1 s" in message and "hung" in message


def test_the_lock_is_free_once_its_holder_dies(hung_ingest) -> None:  # type: ignore[no-untyped-def]
    index_dir, pid = hung_ingest
    os.kill(pid, 9)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with writer_lock(index_dir, timeout=0.2):
                return
        except LockTimeout:
            continue
    raise AssertionError("the lock outlived its holder")


def test_leftovers_of_a_crashed_ingest_are_removed_by_the_next(private_settings) -> None:  # type: ignore[no-untyped-def]
    index_dir = private_settings.index_dir
    versions = index_dir.parent / "index.versions"
    junk = versions / ".tmp-20200101T000000-dead00"
    junk.mkdir()
    (junk / "chunks.jsonl").write_text("{half", encoding="utf-8")
    link = index_dir.parent / ".index.link-dead00"
    link.symlink_to("index.versions/nothing")
    before = current_version(index_dir)
    report, problems = ingest(private_settings)  # nothing changed: no new version, the leftovers still go
    assert not problems and not report.added and current_version(index_dir) == before
    assert not junk.exists() and not link.is_symlink()


def test_retention_counts_versions_only(private_settings) -> None:  # type: ignore[no-untyped-def]
    index_dir = private_settings.index_dir
    versions = index_dir.parent / "index.versions"
    records = _records(private_settings)
    written = []
    for round_ in range(KEEP_VERSIONS + 1):
        (versions / f".tmp-2020010{round_}T000000-dead00").mkdir()
        report = update_index(index_dir, records, [FakeEmbedder()], PARSER_VERSION, rebuild=True)
        written.append(report.version)
    names = sorted(p.name for p in versions.iterdir())
    assert names == sorted(written[-KEEP_VERSIONS:])
    used = {s for name in names for s in read_manifest(versions / name)["segments"]}
    assert {p.name for p in segments_dir(index_dir).iterdir()} == used  # segments no version uses are gone


def test_kbq_ingest_says_who_it_waits_for_and_gives_up_cleanly(hung_ingest, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    index_dir, pid = hung_ingest
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("KB_", "KBQ_"))},
        "KB_INDEX_DIR": str(index_dir),
        "KB_INGEST_LOCK_TIMEOUT": "1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "service.cli", "ingest", str(ROOT / "corpus")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr
    assert f"waiting for the index writer lock, held by process {pid}" in done.stderr
    assert "Error: gave up after 1 s waiting for the index writer lock" in done.stderr
    assert "Traceback" not in done.stderr
