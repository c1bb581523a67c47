"""The LangChain retriever adapter inside a small LCEL chain."""

from __future__ import annotations

from langchain_core.runnables import RunnableLambda, RunnablePassthrough

from service.langchain import KbqRetriever


def test_retriever_returns_documents_with_exact_citation_metadata(kb):
    docs = KbqRetriever(kb=kb, k=4).invoke("Which regions had C5 at launch?")
    assert len(docs) == 4
    for d in docs:
        source = kb.document(d.metadata["doc_id"])
        assert source.text[d.metadata["start"] : d.metadata["end"]] == d.page_content
        assert d.metadata["chunk_id"] == d.id and d.metadata["title"] == source.title
    assert any("Oregon" in d.page_content for d in docs)


def test_retriever_filters_by_source_and_language(kb):
    docs = KbqRetriever(kb=kb, k=5, sources=["faq"], langs=["zh"]).invoke("fstab UUID")
    assert docs and all(d.metadata["source"] == "faq" and d.metadata["lang"] == "zh" for d in docs)


def test_retriever_runs_in_an_lcel_chain(kb):
    def cite(inputs: dict) -> str:
        return "\n".join(
            f"[{i + 1}] {d.metadata['doc_id']}:{d.metadata['start']}-{d.metadata['end']}"
            for i, d in enumerate(inputs["context"])
        )

    chain = {"context": KbqRetriever(kb=kb, k=3), "question": RunnablePassthrough()} | RunnableLambda(cite)
    out = chain.invoke("Why did AWS move from Xen to KVM?")
    lines = out.splitlines()
    assert len(lines) == 3 and all(line.startswith(f"[{i + 1}] ") for i, line in enumerate(lines))
