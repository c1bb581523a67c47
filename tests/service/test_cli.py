"""The `kbq` CLI as a user runs it: real subprocesses, exit codes, --json, clear one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

KBQ = [sys.executable, "-m", "service.cli"]
ROOT = Path(__file__).resolve().parents[2]


def kbq(*args: str, settings=None, index_dir: Path | None = None, corpus: Path | None = None):
    env = dict(os.environ)
    env["KB_INDEX_DIR"] = str(index_dir or settings.index_dir)
    env["KB_CORPUS_DIR"] = str(corpus or (settings.corpus_dir if settings else ROOT / "corpus"))
    env.pop("KBQ_URL", None)
    return subprocess.run([*KBQ, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)


def test_ask_answers_with_numbered_sources_and_exit_0(private_settings):
    result = kbq("ask", "Which regions had C5 at launch?", settings=private_settings)
    assert result.returncode == 0, result.stderr
    assert "Oregon" in result.stdout and "[1]" in result.stdout and "Sources:" in result.stdout


def test_ask_json_follows_the_answer_contract(private_settings):
    result = kbq("ask", "--json", "换到 C5 后 fstab 要怎么改?", settings=private_settings)
    data = json.loads(result.stdout)
    assert set(data) == {"id", "question", "answer", "abstained", "confidence", "citations"}
    assert result.returncode == (3 if data["abstained"] else 0)
    for c in data["citations"]:
        assert {
            "n",
            "chunk_id",
            "doc_id",
            "source",
            "title",
            "section",
            "url",
            "quote",
            "start",
            "end",
        } <= set(c)


def test_unanswerable_question_abstains_with_exit_3(private_settings):
    result = kbq("ask", "What is the capital of France?", settings=private_settings)
    assert result.returncode == 3
    assert "does not cover" in result.stdout


def test_usage_errors_exit_2(private_settings):
    assert kbq("ask", "   ", settings=private_settings).returncode == 2
    assert kbq("ask", "x" * 2001, settings=private_settings).returncode == 2
    assert kbq("nonsense", settings=private_settings).returncode == 2


def test_ask_without_an_index_builds_one_first_and_says_so(tmp_path):
    result = kbq("ask", "Which regions had C5 at launch?", index_dir=tmp_path / "idx" / "index")
    assert result.returncode == 0, result.stderr
    assert "building one" in result.stderr


def test_corrupt_index_is_one_clear_line_and_exit_1(private_settings):
    (private_settings.index_dir.resolve() / "manifest.json").write_text("{", encoding="utf-8")
    result = kbq("ask", "regions?", settings=private_settings)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "kbq ingest --rebuild" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_ingest_summary_and_search_explain(private_settings):
    result = kbq("ingest", "--json", settings=private_settings)
    report = json.loads(result.stdout)
    assert report["embedded_chunks"] == 0 and len(report["unchanged"]) >= 10
    result = kbq("search", "--explain", "nvme io_timeout", settings=private_settings)
    assert result.returncode == 0 and "lexical=" in result.stdout


def test_docs_and_feedback_list(private_settings):
    kbq("ask", "Which regions had C5 at launch?", settings=private_settings)
    docs = json.loads(kbq("docs", "--json", settings=private_settings).stdout)
    assert {d["kind"] for d in docs} == {"article", "faq", "thread"}
    rows = json.loads(kbq("feedback", "--json", settings=private_settings).stdout)
    assert rows and rows[0]["client"] == "cli"


@pytest.mark.parametrize("bad", ["threads/broken.json"])
def test_ingest_reports_bad_files_and_keeps_going(private_settings, bad):
    (private_settings.corpus_dir / bad).write_text("[{", encoding="utf-8")
    result = kbq("ingest", settings=private_settings)
    assert result.returncode == 0
    assert "skipped 1 file" in result.stdout and "not valid JSON" in result.stdout


def test_answer_text_keeps_the_line_breaks_of_a_cited_list():
    from kb.types import Answer
    from service.render import answer_text

    listed = "Supported AMIs:\n- Ubuntu 14.04 or later\n- RHEL 7.4 or later [1]"
    text = answer_text(Answer("id", "which AMIs?", listed, False, 0.9, ()))
    assert text.splitlines()[:3] == ["Supported AMIs:", "- Ubuntu 14.04 or later", "- RHEL 7.4 or later [1]"]
