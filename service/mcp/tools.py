"""The kbq MCP server: tools ``ask``, ``search`` and ``read_document``, and every document as a resource.

The tools translate, like the HTTP routes: check the arguments, call kb/ in a worker thread, return the
API's own shapes (``AnswerOut`` plus the answer's language, ``SearchOut``). Anything a caller got wrong
comes back as a tool error naming the fix, never as a crash.
"""

from __future__ import annotations

from collections.abc import Collection
from functools import partial
from typing import Annotated, Any, Literal, Protocol

import anyio.to_thread
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError, ToolError
from mcp_types import Resource as ResourceInfo
from mcp_types import ToolAnnotations
from pydantic import BaseModel, Field

from kb.answer import MAX_QUESTION_CHARS, InvalidQuestion
from kb.config import Settings
from kb.knowledge import KnowledgeBase
from kb.text import detect_lang
from kb.types import Answer, Document
from service.models import AnswerOut, SearchOut
from service.schemas import hit_dict

MCP_CLIENT = "mcp"  # the answer log's client (surface) for every answer asked through MCP
DOC_URI = "kbq://documents/"
MAX_READ_CHARS = 20_000  # one read_document call; enough for any FAQ entry or article section
Source = Literal["article", "faq", "thread"]
Lang = Literal["en", "zh"]
INSTRUCTIONS = (
    "kbq answers questions about AWS moving EC2 from the Xen hypervisor to a KVM-based one (the C5 launch, "
    "November 2017; Nitro, NVMe and ENA drivers, regions, migration). Every sentence of an answer cites the "
    "exact passage it came from ([n] names citations[n-1]); when the material does not cover a question the "
    "answer says so (abstained = true) and the citations are only the nearest passages. Use read_document "
    "with a citation's doc_id, start and end (or a wider range) to read around a quote."
)


class McpAnswer(AnswerOut):
    lang: Lang = Field(description="The language the answer is written in.")


class DocumentSpan(BaseModel):
    doc_id: str
    title: str
    kind: Source
    lang: str
    url: str | None
    length: int = Field(description="Characters in the document's canonical text.")
    start: int
    end: int
    text: str = Field(description="Exactly the document's text[start:end].")


class Backend(Protocol):
    """What the tools need from the service; ``service.state.AppState`` is one. ``knowledge`` is called once
    per call, so a server that reloads its index answers from the new one; ``answer`` logs the answer."""

    settings: Settings

    def knowledge(self) -> KnowledgeBase: ...

    def answer(
        self,
        question: str,
        client: str,
        kinds: Collection[str] | None = None,
        langs: Collection[str] | None = None,
        lang: str | None = None,
    ) -> Answer: ...


def answer_question(
    backend: Backend, question: str, lang: str | None, sources: Collection[str] | None
) -> Answer:
    """Answer in ``lang`` (default: the question's language) and log the answer with client "mcp"."""
    question = question.strip()
    limit = min(backend.settings.max_question_chars, MAX_QUESTION_CHARS)
    if not question:
        raise ToolError("the question is empty: pass the question to answer as `question`")
    if len(question) > limit:
        raise ToolError(f"the question is {len(question)} characters; the limit is {limit}")
    try:
        return backend.answer(question, MCP_CLIENT, kinds=sources or None, lang=lang)
    except InvalidQuestion as exc:
        raise ToolError(str(exc)) from None


def read_span(doc: Document, start: int, end: int | None) -> DocumentSpan:
    """``text[start:end]``; without ``end``, up to MAX_READ_CHARS from ``start`` (``length`` says the rest)."""
    length = len(doc.text)
    stop = min(length, start + MAX_READ_CHARS) if end is None else end
    if not 0 <= start < stop <= length:
        raise ToolError(
            f"start and end must satisfy 0 <= start < end <= {length} (the length of {doc.doc_id}); "
            f"got start={start}, end={end}"
        )
    if stop - start > MAX_READ_CHARS:
        raise ToolError(
            f"that span is {stop - start} characters; read at most {MAX_READ_CHARS} at a time "
            f"(e.g. start={start}, end={start + MAX_READ_CHARS})"
        )
    return DocumentSpan(
        doc_id=doc.doc_id,
        title=doc.title,
        kind=doc.kind,  # type: ignore[arg-type]
        lang=doc.lang,
        url=doc.url,
        length=length,
        start=start,
        end=stop,
        text=doc.text[start:stop],
    )


def _document(kb: KnowledgeBase, doc_id: str) -> Document:
    doc = kb.document(doc_id)
    if doc is None:
        known = ", ".join(d.doc_id for d in kb.documents()[:20])
        raise ToolError(f"there is no document {doc_id!r}; the documents are: {known}")
    return doc


class KbqMCPServer(MCPServer):
    """MCPServer whose resource list is read from the knowledge base on every request, so documents added by
    a re-ingest are listed without a restart (a static registration would list the documents at start)."""

    def __init__(self, backend: Backend, **options: Any) -> None:
        super().__init__(**options)
        self.backend = backend

    async def list_resources(self) -> list[ResourceInfo]:
        return [
            ResourceInfo(
                uri=DOC_URI + doc.doc_id,
                name=doc.doc_id,
                title=doc.title,
                description=f"{doc.kind}, {doc.lang}: the canonical text every citation's offsets point into",
                mime_type="text/plain",
                size=len(doc.text.encode()),
            )
            for doc in self.backend.knowledge().documents()
        ]


def build_server(backend: Backend) -> KbqMCPServer:
    """The MCP server over ``backend``; run it over stdio or mount its streamable HTTP app."""
    server = KbqMCPServer(backend, name="kbq", version="1.0", instructions=INSTRUCTIONS, log_level="WARNING")
    read_only = ToolAnnotations(read_only_hint=True, open_world_hint=False)

    @server.tool(annotations=ToolAnnotations(read_only_hint=False, open_world_hint=False))
    async def ask(
        question: Annotated[str, Field(description="The question, up to 2000 characters.")],
        lang: Annotated[Lang | None, Field(description="Answer language; default: the question's.")] = None,
        sources: Annotated[list[Source] | None, Field(description="Only answer from these kinds.")] = None,
    ) -> McpAnswer:
        """Answer a question about the AWS Xen-to-KVM (C5) move with cited sentences, or abstain.

        Every [n] in `answer` names citations[n-1], whose `quote` is exactly the cited document's
        text[start:end]. When `abstained` is true the material does not cover the question and the
        citations are only the nearest passages, not an answer. The answer is logged for its maintainers."""
        answer = await anyio.to_thread.run_sync(partial(answer_question, backend, question, lang, sources))
        written = lang or getattr(answer, "lang", None) or detect_lang(answer.question)
        return McpAnswer.model_validate({**answer.to_dict(), "lang": written})

    @server.tool(annotations=read_only)
    async def search(
        query: Annotated[str, Field(description="What to look for, in English or Chinese.")],
        k: Annotated[int, Field(ge=1, le=50, description="How many passages.")] = 8,
        sources: Annotated[list[Source] | None, Field(description="Only these kinds.")] = None,
        langs: Annotated[list[Lang] | None, Field(description="Only passages in these languages.")] = None,
    ) -> SearchOut:
        """The passages hybrid retrieval ranks highest for `query`, with their exact offsets."""

        def run() -> SearchOut:
            try:
                hits = backend.knowledge().search(query, k=k, kinds=sources or None, langs=langs or None)
            except InvalidQuestion as exc:
                raise ToolError(f"the query is invalid: {exc}") from None
            return SearchOut.model_validate({"hits": [hit_dict(h) for h in hits]})

        return await anyio.to_thread.run_sync(run)

    @server.tool(annotations=read_only)
    async def read_document(
        doc_id: Annotated[str, Field(description="A document id, e.g. a citation's doc_id.")],
        start: Annotated[int, Field(ge=0, description="First character (0-based).")] = 0,
        end: Annotated[int | None, Field(ge=1, description="One past the last; default: the end.")] = None,
    ) -> DocumentSpan:
        """Read `text[start:end]` of one document, e.g. around a citation: at most 20000 characters at a
        time; without `end`, the next 20000 (`length` is the document's whole length)."""
        return read_span(_document(backend.knowledge(), doc_id), start, end)

    @server.resource(DOC_URI + "{+doc_id}", name="document", title="A kbq document", mime_type="text/plain")
    def document(doc_id: str) -> str:
        """One document's canonical text, which every citation's start and end point into."""
        doc = backend.knowledge().document(doc_id)
        if doc is None:
            raise ResourceNotFoundError(f"there is no document {doc_id!r}")
        return doc.text

    return server
