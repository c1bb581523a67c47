"""`kbq eval --tune`: re-derive the grid-chosen constants of kb/tuning.py on the golden ``tune`` split.

One constant at a time, the others at their shipped values, under the shipped calibration: retrieval
constants by recall@5 and MRR of the answerable questions, answer constants by
``support + min(abstention precision, recall) + language match``. It prints a table per constant with
the shipped value marked; changing a value is an edit of kb/tuning.py, followed by
``kbq eval --calibrate`` (the calibration records the constants it was fitted under).

The public-benchmark fusion weights (en-en, en-zh, zh-zh) are searched by ``python -m evals.public``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, TextIO

from evals.golden import Item, Snapshot, relevant_chunks
from evals.metrics import mean, reciprocal_rank, success_at
from evals.runner import Result, refinish, run, summarise
from kb.answer import Answerer
from kb.knowledge import KnowledgeBase
from kb.retrieve import Retriever
from kb.tuning import ANSWERING, FUSION, LEXICAL, Answering, Fusion

RETRIEVAL_GRID: dict[str, Sequence[Any]] = {
    "official_prior": (0.0, 0.3, 0.6, 0.9, 1.2),
    "chunk_share": (0.25, 0.5, 0.75),
    "zh>en lexical": (0.4, 0.8, 1.2),
    "zh>en use": (0.8, 1.6, 2.4),
}
ANSWER_GRID: dict[str, Sequence[Any]] = {
    "candidate_chunks": (3, 4, 5, 6, 8),
    "relevance_passages": (0.0, 0.5, 1.0, 2.0),
    "max_sentences": (3, 4, 5, 6),
    "neighbour_share": (0.05, 0.1, 0.2, 0.3),
    "community_share": (0.3, 0.5, 0.7, 1.01),
    "redundant": (0.7, 0.75, 0.8, 0.85),
    "counterpart": (0.5, 0.55, 0.6, 0.65, 0.7),
    "other_lang_lead_only": (True, False),
}

# the constants that change which sentences are candidates, so the questions are drafted again under them
DRAFTING = ("relevance_passages", "candidate_chunks")


def run_grid(kb: KnowledgeBase, items: Sequence[Item], out: TextIO) -> None:
    answerable = [i for i in items if i.answerable]
    print(f"tune split: {len(items)} questions ({len(answerable)} answerable)\n", file=out)
    for name, values in RETRIEVAL_GRID.items():
        rows = [(v, _retrieval(kb, answerable, _fusion(name, v))) for v in values]
        _print(out, name, _shipped_fusion(name), rows, ("recall@5", "mrr"))
    drafts = run(kb, list(items))
    for name, values in ANSWER_GRID.items():
        rows = [(v, _answers(kb, items, drafts, replace(ANSWERING, **{name: v}))) for v in values]
        _print(
            out, name, getattr(ANSWERING, name), rows, ("score", "support", "abstain P", "abstain R", "lang")
        )


def _fusion(name: str, value: Any) -> Fusion:
    if name.startswith("zh>en "):
        signal = name.split(" ")[1]
        key = LEXICAL if signal == "lexical" else signal
        weights = {pair: dict(table) for pair, table in FUSION.pair_weights.items()}
        weights[("zh", "en")][key] = value
        return replace(FUSION, pair_weights=weights)
    return replace(FUSION, **{name: value})


def _shipped_fusion(name: str) -> Any:
    if name.startswith("zh>en "):
        signal = name.split(" ")[1]
        return FUSION.pair_weights[("zh", "en")][LEXICAL if signal == "lexical" else signal]
    return getattr(FUSION, name)


def _retrieval(kb: KnowledgeBase, items: Sequence[Item], fusion: Fusion) -> dict[str, float]:
    base = kb.answerer.retriever
    retriever = Retriever(base.store, base.embedders, None, fusion)
    corpus = Snapshot.of(base.store)
    ranked = []
    for item in items:
        relevant = relevant_chunks(item, corpus.documents, corpus.chunks)
        ranked.append([h.chunk.chunk_id in relevant for h in retriever.search(item.question, k=10)])
    return {
        "recall@5": mean(success_at(r, 5) for r in ranked),
        "mrr": mean(reciprocal_rank(r) for r in ranked),
    }


def _answers(
    kb: KnowledgeBase, items: Sequence[Item], drafts: Sequence[Result], answering: Answering
) -> dict[str, float]:
    answerer = Answerer(
        kb.answerer.retriever, kb.answerer.calibration, kb.answerer.max_question_chars, answering
    )
    if any(getattr(answering, f) != getattr(ANSWERING, f) for f in DRAFTING):  # changes the drafts themselves
        results = run(kb, items, answerer=answerer)
    else:
        results = refinish(kb, drafts, answerer=answerer)
    m = summarise(results)
    score = m["support"] + min(m["abstain_precision"], m["abstain_recall"]) + m["lang_match"]
    return {
        "score": score,
        "support": m["support"],
        "abstain P": m["abstain_precision"],
        "abstain R": m["abstain_recall"],
        "lang": m["lang_match"],
    }


def _print(
    out: TextIO, name: str, shipped: Any, rows: list[tuple[Any, dict[str, float]]], columns: Sequence[str]
) -> None:
    best = max(rows, key=lambda r: r[1][columns[0]])[0]
    print(f"{name} (shipped {shipped}, best {best})", file=out)
    print("| value | " + " | ".join(columns) + " |", file=out)
    print("|---" * (len(columns) + 1) + "|", file=out)
    for value, m in rows:
        mark = " (shipped)" if value == shipped else ""
        print(f"| {value}{mark} | " + " | ".join(f"{m[c]:.3f}" for c in columns) + " |", file=out)
    print(file=out)
