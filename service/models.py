"""Request and response bodies of the HTTP API, named by role. They mirror kb's types; no logic here."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from kb.config import MAX_QUESTION_CHARS

Source = Literal["article", "faq", "thread"]
Lang = Literal["en", "zh"]
Label = Literal["official", "community", "correction"]


class AskRequest(BaseModel):
    question: str = Field(
        min_length=1,
        description=f"The question, up to KB_MAX_QUESTION_CHARS characters ({MAX_QUESTION_CHARS} by default).",
        examples=["Which regions had C5 at launch?"],
    )
    sources: list[Source] | None = Field(None, description="Only answer from these kinds of source.")
    langs: list[Lang] | None = Field(None, description="Only answer from documents in these languages.")
    lang: Lang | None = Field(
        None, description="The language to answer in; by default the question's.", examples=["zh"]
    )
    client: str | None = Field(
        None, max_length=64, description="Who is asking (widget, slack, cli…), for the log."
    )


class SearchRequest(BaseModel):
    query: str = Field(
        min_length=1,
        pattern=r"\S",
        description="Up to KB_MAX_QUESTION_CHARS characters, like a question.",
        examples=["NVMe root device"],
    )
    k: int = Field(10, ge=1, le=50)
    sources: list[Source] | None = None
    langs: list[Lang] | None = None


class FeedbackRequest(BaseModel):
    answer_id: str = Field(min_length=1, max_length=64)
    helpful: bool
    comment: str | None = Field(None, max_length=2000)


class CorrectedOut(BaseModel):
    chunk_id: str
    author: str | None = None
    url: str | None = None


class CitationOut(BaseModel):
    n: int
    chunk_id: str
    doc_id: str
    source: Source
    title: str
    section: str
    url: str | None
    author: str | None
    date: str | None
    lang: str
    quote: str = Field(description="Exactly document.text[start:end].")
    start: int
    end: int
    score: float
    community: bool = Field(False, description="From a discussion thread: a community report.")
    label: Label = Field(
        description="official (article, FAQ), community (a thread comment) or correction (a community "
        "reply that corrects an earlier claim)."
    )
    corrects: CorrectedOut | None = Field(None, description="For a correction: the comment it corrects.")


class AnswerOut(BaseModel):
    id: str
    question: str
    lang: Lang = Field(description="The language the answer is written in.")
    answer: str = Field(description="Every [n] names a citation.")
    abstained: bool
    confidence: float = Field(ge=0, le=1)
    citations: list[CitationOut]


class HitOut(BaseModel):
    rank: int
    score: float
    dense: float
    lexical: float
    scores: dict[str, float]
    chunk_id: str
    doc_id: str
    source: Source
    lang: str
    section: str
    text: str
    start: int
    end: int
    meta: dict[str, Any]


class SearchOut(BaseModel):
    hits: list[HitOut]


class DocumentOut(BaseModel):
    doc_id: str
    kind: Source
    title: str
    lang: str
    date: str | None
    url: str | None
    chunks: int


class SpanOut(BaseModel):
    start: int
    end: int
    text: str


class DocumentDetailOut(DocumentOut):
    author: str | None
    text: str = Field(description="The canonical text every citation's offsets point into.")
    span: SpanOut | None = Field(None, description="text[start:end] when ?start=&end= were given.")
    paragraph: SpanOut | None = Field(None, description="The blank-line-delimited paragraph around the span.")


class HealthOut(BaseModel):
    status: Literal["ok"]
    version: str
    documents: int
    chunks: int
    confidence: Literal["corpus", "portable"] = Field(
        description="the confidence model answering: the one fitted on this corpus, or the portable one "
        "(the index is mostly other documents than the calibration was fitted on)"
    )


class ErrorBody(BaseModel):
    code: str = Field(examples=["invalid_request"])
    message: str


class ErrorOut(BaseModel):
    error: ErrorBody
