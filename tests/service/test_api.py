"""The HTTP API in process: answers, citations, search, documents, feedback, streaming, errors."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from kb.config import Settings
from service.feedback import FeedbackStore
from service.routes.ask import pieces
from service.spans import paragraph_bounds
from tests.service.support import QUESTIONS, UNANSWERABLE, assemble, check_citations, parse_sse, same_answer


def _document(client: TestClient):  # type: ignore[no-untyped-def]
    def get(doc_id: str) -> dict:
        response = client.get(f"/v1/documents/{doc_id}")
        assert response.status_code == 200, response.text
        return response.json()

    return get


def _stream(client: TestClient, body: dict) -> dict:
    with client.stream("POST", "/v1/ask/stream", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return assemble(parse_sse(response.iter_lines()))


@pytest.mark.parametrize("question", QUESTIONS)
def test_ask_cites_the_exact_passages(client: TestClient, question: str) -> None:
    response = client.post("/v1/ask", json={"question": question})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert set(answer) == {"id", "question", "lang", "answer", "abstained", "confidence", "citations"}
    assert not answer["abstained"] and answer["citations"] and 0 <= answer["confidence"] <= 1
    assert "[1]" in answer["answer"]
    check_citations(answer, _document(client))


def test_ask_abstains_when_the_material_is_silent(client: TestClient) -> None:
    answer = client.post("/v1/ask", json={"question": UNANSWERABLE}).json()
    assert answer["abstained"] is True
    assert "does not cover" in answer["answer"] and "[1]" not in answer["answer"]
    check_citations(answer, _document(client))


def test_ask_filters_by_source_and_language(client: TestClient) -> None:
    body = {"question": "NVMe root device after moving to C5", "sources": ["thread"], "langs": ["en"]}
    answer = client.post("/v1/ask", json=body).json()
    assert answer["citations"]
    assert {(c["source"], c["lang"]) for c in answer["citations"]} == {("thread", "en")}
    bad = client.post("/v1/ask", json={"question": "x", "sources": ["blog"]})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"


def test_the_answer_comes_in_the_requested_language_else_the_questions(client: TestClient) -> None:
    english, chinese = QUESTIONS[0], QUESTIONS[2]
    assert client.post("/v1/ask", json={"question": english}).json()["lang"] == "en"
    assert client.post("/v1/ask", json={"question": chinese}).json()["lang"] == "zh"
    for question, lang in ((english, "zh"), (chinese, "en")):
        answer = client.post("/v1/ask", json={"question": question, "lang": lang}).json()
        assert answer["lang"] == lang and answer["question"] == question
        check_citations(answer, _document(client))
        assert _stream(client, {"question": question, "lang": lang})["lang"] == lang


@pytest.mark.parametrize("lang", ["fr", "EN", "", 1])
def test_an_unknown_answer_language_is_a_json_422(client: TestClient, lang: object) -> None:
    for path in ("/v1/ask", "/v1/ask/stream"):
        response = client.post(path, json={"question": QUESTIONS[0], "lang": lang})
        assert response.status_code == 422, (path, lang)
        assert (
            response.json()["error"]["code"] == "invalid_request"
            and "lang" in response.json()["error"]["message"]
        )


def test_citations_say_whether_they_are_official_community_or_a_correction(client: TestClient) -> None:
    seen = set()
    extra = [
        "NVMe root device after moving to C5",
        "c5 rollback story",
        "Would --sriov-net-support simple do for c5?",
    ]
    for question in [*QUESTIONS, *extra]:
        for c in client.post("/v1/ask", json={"question": question}).json()["citations"]:
            seen.add(c["label"])
            assert c["label"] in {"official", "community", "correction"}
            assert (c["label"] == "official") is (not c["community"]) is (c["source"] != "thread"), c
            assert (c["corrects"] is not None) is (c["label"] == "correction"), c
            if c["corrects"]:
                assert set(c["corrects"]) == {"chunk_id", "author", "url"}
    assert {"official", "community"} <= seen


def test_search_ranks_hits(client: TestClient) -> None:
    response = client.post("/v1/search", json={"query": "NVMe device names on C5", "k": 5, "langs": ["en"]})
    assert response.status_code == 200
    hits = response.json()["hits"]
    assert 0 < len(hits) <= 5 and [h["rank"] for h in hits] == list(range(1, len(hits) + 1))
    assert all(h["lang"] == "en" and h["text"] for h in hits)
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    for k in (0, 51):
        assert client.post("/v1/search", json={"query": "nvme", "k": k}).status_code == 422


def test_documents_list_and_text(client: TestClient, kb) -> None:  # type: ignore[no-untyped-def]
    listed = client.get("/v1/documents").json()
    assert [d["doc_id"] for d in listed] == [d.doc_id for d in kb.documents()]
    assert set(listed[0]) == {"doc_id", "kind", "title", "lang", "date", "url", "chunks"}
    assert all(d["chunks"] > 0 for d in listed)
    doc = client.get("/v1/documents/faq/c5-migration.en").json()
    assert doc["text"] == kb.document("faq/c5-migration.en").text and doc["author"] == "kbq team"
    assert doc["span"] is None and doc["paragraph"] is None


def test_document_span_and_paragraph(client: TestClient, kb) -> None:  # type: ignore[no-untyped-def]
    text = kb.document("faq/c5-migration.en").text
    start = text.index("C5 was available in only three regions")
    end = start + len("C5 was available")
    doc = client.get("/v1/documents/faq/c5-migration.en", params={"start": start, "end": end}).json()
    assert doc["span"] == {"start": start, "end": end, "text": "C5 was available"}
    para = doc["paragraph"]
    assert para["text"] == text[para["start"] : para["end"]]
    assert para["text"].startswith("At launch in November 2017") and para["text"].endswith("at launch.")
    assert "\n\n" not in para["text"]


@pytest.mark.parametrize(
    "params",
    [
        {"start": 5, "end": 5},
        {"start": 9, "end": 3},
        {"start": 0, "end": 10**7},
        {"start": 3},
        {"start": -1, "end": 4},
        {"start": "a", "end": 4},
    ],
)
def test_document_invalid_range_is_422(client: TestClient, params: dict) -> None:
    response = client.get("/v1/documents/faq/c5-migration.en", params=params)
    assert response.status_code == 422
    assert response.json()["error"]["code"] in {"invalid_range", "invalid_request"}


def test_paragraph_bounds() -> None:
    text = "Title\n\nFirst para line one.\nline two.\n  \nSecond para."
    start = text.index("line one")
    s, e = paragraph_bounds(text, start, start + 4)
    assert text[s:e] == "First para line one.\nline two."
    s, e = paragraph_bounds(text, text.index("Second"), len(text))
    assert text[s:e] == "Second para."
    assert paragraph_bounds(text, 0, 2) == (0, 5)


def test_feedback_joins_the_logged_answer(client: TestClient, api_settings: Settings) -> None:
    answer = client.post("/v1/ask", json={"question": QUESTIONS[0], "client": "pytest"}).json()
    for helpful in (True, True, False):
        response = client.post(
            "/v1/feedback", json={"answer_id": answer["id"], "helpful": helpful, "comment": "ok"}
        )
        assert response.status_code == 204 and response.content == b""
    rows = {r["id"]: r for r in FeedbackStore(api_settings.feedback_db).recent(200)}
    row = rows[answer["id"]]
    assert (row["up"], row["down"], row["client"], row["question"]) == (2, 1, "pytest", QUESTIONS[0])
    assert row["confidence"] == answer["confidence"] and row["created"][:4].isdigit()
    logged = FeedbackStore(api_settings.feedback_db).answer(answer["id"])
    assert logged is not None and logged["citations"] == answer["citations"] and logged["latency_ms"] >= 0


def test_feedback_for_an_unknown_answer_is_404(client: TestClient) -> None:
    response = client.post("/v1/feedback", json={"answer_id": "no-such-answer", "helpful": True})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    too_long = client.post("/v1/feedback", json={"answer_id": "x", "helpful": True, "comment": "x" * 2001})
    assert too_long.status_code == 422


@pytest.mark.parametrize(
    "method,path,body,status,code",
    [
        ("GET", "/no/such/page", None, 404, "not_found"),
        ("GET", "/v1/documents/faq/no-such-doc", None, 404, "not_found"),
        ("POST", "/v1/ask", {}, 422, "invalid_request"),
        ("POST", "/v1/ask", {"question": "   "}, 422, "invalid_request"),
        ("POST", "/v1/ask", {"question": "x" * 2001}, 422, "question_too_long"),
        ("POST", "/v1/search", {"query": "nvme", "k": "many"}, 422, "invalid_request"),
        ("GET", "/v1/ask", None, 405, "method_not_allowed"),
    ],
)
def test_errors_are_json_with_a_stable_code(
    client: TestClient, method: str, path: str, body: dict | None, status: int, code: str
) -> None:
    response = client.request(method, path, json=body)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code and isinstance(error["message"], str) and error["message"]
    assert set(response.json()) == {"error"} and set(error) == {"code", "message"}


def test_question_too_long_says_what_the_limit_is(client: TestClient) -> None:
    message = client.post("/v1/ask", json={"question": "why " * 600}).json()["error"]["message"]
    assert "2400 characters" in message and "2000" in message
    assert client.post("/v1/ask", json={"question": "x" * 2000}).status_code == 200


def test_the_question_limit_is_the_settings_one(make_client) -> None:  # type: ignore[no-untyped-def]
    with make_client(max_question_chars=40) as c:
        for path in ("/v1/ask", "/v1/ask/stream"):
            response = c.post(path, json={"question": "x" * 41})
            assert response.status_code == 422 and response.json()["error"]["code"] == "question_too_long"
            assert (
                "41 characters" in response.json()["error"]["message"]
                and "40" in response.json()["error"]["message"]
            )
        assert c.post("/v1/ask", json={"question": "Which regions had C5 at launch?"}).status_code == 200
        assert c.post("/v1/search", json={"query": "x" * 41}).status_code == 422
        assert '{"maxQuestionChars": 40}' in c.get("/widget.js").text


def test_malformed_json_is_invalid_request(client: TestClient) -> None:
    response = client.post("/v1/ask", content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_request"


@pytest.mark.parametrize("question", [QUESTIONS[0], QUESTIONS[2], UNANSWERABLE])
def test_stream_adds_up_to_the_same_answer(client: TestClient, api_settings: Settings, question: str) -> None:
    plain = client.post("/v1/ask", json={"question": question}).json()
    streamed = _stream(client, {"question": question})
    assert same_answer(streamed, plain) and streamed["id"] != plain["id"]
    assert FeedbackStore(api_settings.feedback_db).answer(streamed["id"]) is not None


def test_stream_sends_small_pieces(client: TestClient) -> None:
    with client.stream("POST", "/v1/ask/stream", json={"question": QUESTIONS[2]}) as response:
        events = parse_sse(response.iter_lines())
    deltas = [data["text"] for name, data in events if name == "delta"]
    assert len(deltas) > 20 and max(len(d) for d in deltas) < 30


def test_stream_rejects_bad_input_as_json(client: TestClient) -> None:
    response = client.post("/v1/ask/stream", json={"question": "x" * 2001})
    assert response.status_code == 422 and response.json()["error"]["code"] == "question_too_long"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "  lead and trail  ",
        "C5 于 2017 年 11 月 6 日发布。[1]",
        "a\nb\tc [2]",
        "run `AWSSupport-CheckXenToNitroMigrationRequirements` first" + " " * 40 + "x",
    ],
)
def test_pieces_are_small_and_concatenate_to_the_text(text: str) -> None:
    assert "".join(pieces(text)) == text
    assert all(len(p) <= 28 for p in pieces(text))


def test_healthz_reports_the_index(client: TestClient, kb) -> None:  # type: ignore[no-untyped-def]
    health = client.get("/healthz").json()
    assert health == {
        "status": "ok",
        "version": kb.version,
        "documents": len(kb.documents()),
        "chunks": kb.counts()[1],
        "confidence": "corpus",  # the shipped calibration was fitted on this corpus
    }


def test_home_page_and_static_files(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "kbq" in page.text and "text/html" in page.headers["content-type"]
    assert '<script src="/widget.js"' in page.text and "<script>" not in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    script = client.get("/widget.js")
    assert script.status_code == 200 and "/v1/ask/stream" in script.text
    assert client.get("/static/wiki.css").status_code == 200


def test_openapi_documents_the_api(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {
        "/v1/ask",
        "/v1/ask/stream",
        "/v1/search",
        "/v1/documents",
        "/v1/documents/{doc_id}",
        "/v1/feedback",
        "/healthz",
        "/metrics",
    } <= set(spec["paths"])
    ask = spec["paths"]["/v1/ask"]["post"]
    assert ask["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/AskRequest")
    assert {"401", "422", "429"} <= set(ask["responses"])
