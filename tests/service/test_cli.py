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


def kbq(*args: str, settings=None, index_dir: Path | None = None, corpus: Path | None = None, extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KB_", "KBQ_"))}
    env["KB_INDEX_DIR"] = str(index_dir or settings.index_dir)
    env["KB_CORPUS_DIR"] = str(corpus or (settings.corpus_dir if settings else ROOT / "corpus"))
    env.update(extra or {})
    return subprocess.run([*KBQ, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)


def test_ask_answers_with_numbered_sources_and_exit_0(private_settings):
    result = kbq("ask", "Which regions had C5 at launch?", settings=private_settings)
    assert result.returncode == 0, result.stderr
    assert "Oregon" in result.stdout and "[1]" in result.stdout and "Sources:" in result.stdout


def test_ask_json_follows_the_answer_contract(private_settings):
    result = kbq("ask", "--json", "换到 C5 后 fstab 要怎么改?", settings=private_settings)
    data = json.loads(result.stdout)
    assert set(data) == {"id", "question", "lang", "answer", "abstained", "confidence", "citations"}
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


def test_ask_lang_names_the_answer_language(private_settings):
    result = kbq(
        "ask", "--json", "--lang", "zh", "Which regions had C5 at launch?", settings=private_settings
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["lang"] == "zh" and data["question"] == "Which regions had C5 at launch?"
    english = kbq("ask", "--lang", "en", "--doc-lang", "en", "C5 在哪些区域可用?", settings=private_settings)
    assert english.returncode == 0 and "answer in English" in english.stdout
    assert kbq("ask", "--lang", "fr", "regions?", settings=private_settings).returncode == 2


def test_ask_over_http_takes_the_url_and_key_from_the_environment(private_settings):
    from dataclasses import replace

    from service.feedback import FeedbackStore
    from tests.service.support import serve

    with serve(replace(private_settings, api_keys=("cli-key",))) as url:
        env = {"KBQ_URL": url, "KB_INDEX_DIR": "/nonexistent/index"}  # the answer comes from the service
        refused = kbq("ask", "Which regions had C5 at launch?", settings=private_settings, extra=env)
        assert refused.returncode == 1 and "401" in refused.stderr
        env["KBQ_API_KEY"] = "cli-key"
        result = kbq(
            "ask", "--json", "--lang", "zh", "Which regions had C5?", settings=private_settings, extra=env
        )
        assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["lang"] == "zh"
    assert FeedbackStore(private_settings.feedback_db).answer(data["id"]) is not None


def test_a_question_over_kb_max_question_chars_is_a_usage_error(private_settings):
    extra = {"KB_MAX_QUESTION_CHARS": "20"}
    result = kbq("ask", "which regions had C5 at launch?", settings=private_settings, extra=extra)
    assert result.returncode == 2 and "20" in result.stderr
    assert kbq("ask", "C5 regions?", settings=private_settings, extra=extra).returncode == 0


def test_settings_read_every_variable_the_cli_needs():
    from kb.config import Settings

    env = {"KB_MAX_QUESTION_CHARS": "300", "KB_LOG_LEVEL": "info", "KBQ_URL": "http://x", "KBQ_API_KEY": "k"}
    settings = Settings.from_env(env)
    assert (settings.max_question_chars, settings.log_level) == (300, "info")
    assert (settings.service_url, settings.service_api_key) == ("http://x", "k")
    assert Settings.from_env({}).max_question_chars == 2000 and Settings.from_env({}).log_level == "warning"


def test_unanswerable_question_abstains_with_exit_3(private_settings):
    result = kbq("ask", "What is the capital of France?", settings=private_settings)
    assert result.returncode == 3
    assert "does not cover" in result.stdout


def test_usage_errors_exit_2(private_settings):
    assert kbq("ask", "   ", settings=private_settings).returncode == 2
    assert kbq("ask", "x" * 2001, settings=private_settings).returncode == 2
    assert kbq("nonsense", settings=private_settings).returncode == 2


def test_ask_without_an_index_builds_one_first_and_says_so(tmp_path):
    # without the relevance model the build takes a fifth of the time; building with it is the golden gate's
    result = kbq(
        "ask",
        "Which regions had C5 at launch?",
        index_dir=tmp_path / "idx" / "index",
        extra={"KB_RELEVANCE_MODEL": "none"},
    )
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
    answer = Answer(
        id="id", question="which AMIs?", lang="en", answer=listed, abstained=False, confidence=0.9
    )
    text = answer_text(answer)
    assert text.splitlines()[:3] == ["Supported AMIs:", "- Ubuntu 14.04 or later", "- RHEL 7.4 or later [1]"]


def test_answer_text_labels_community_reports_and_corrections():
    from kb.types import Answer, Citation
    from service.render import answer_text

    def cited(n: int, label: str, corrects: dict | None = None) -> Citation:
        return Citation(
            n=n,
            chunk_id=f"c{n}",
            doc_id="threads/7bodi0",
            source="thread" if label != "official" else "faq",
            title="t",
            section="s",
            url=None,
            author="bob",
            date=None,
            lang="en",
            quote="q",
            start=0,
            end=1,
            score=0.5,
            community=label != "official",
            label=label,
            corrects=corrects,
        )

    wrong = {"chunk_id": "c0", "author": "alice", "url": "https://reddit.com/r/aws/c0"}
    citations = (cited(1, "official"), cited(2, "community"), cited(3, "correction", wrong))
    answer = Answer(
        id="id",
        question="q",
        lang="zh",
        answer="答 [1][2][3]",
        abstained=False,
        confidence=0.9,
        citations=citations,
    )
    text = answer_text(answer)
    assert "— faq, undated" in text and "(community report)" in text and "(community correction)" in text
    assert "corrects alice's comment: https://reddit.com/r/aws/c0" in text and "answer in 中文" in text
