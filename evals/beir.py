"""The public benchmarks' data for ``python -m evals.public``: where each BEIR-layout dataset lives, how it is read
(corpus, queries, relevance judgements) and how its queries split into a tuning (dev) and a reporting set.

The data is read in place from ``../shared/bench`` and never copied into the repository.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH_CANDIDATES = (ROOT.parent / "shared" / "bench", Path("/work/shared/bench"))


@dataclass(frozen=True)
class Spec:
    """Where one benchmark lives and how it splits into a tuning (dev) and a reporting (test) query set."""

    name: str
    folder: str
    queries: str  # file holding the reported queries
    split: str  # qrels of the reported queries
    dev_split: str | None = (
        None  # qrels of separate tuning queries (SciFact train); None: half of the queries
    )
    dev_queries: str = "queries.jsonl"
    corpus: str = ""  # cache key of the corpus, when another dataset shares it

    @property
    def corpus_key(self) -> str:
        return self.corpus or self.name


DATASETS = {
    "scifact": Spec("scifact", "scifact", "queries_test.jsonl", "test", dev_split="train"),
    "xquad-en": Spec("xquad-en", "xquad/en", "queries.jsonl", "validation"),
    "xquad-zh": Spec("xquad-zh", "xquad/zh", "queries.jsonl", "validation"),
    "xquad-en2zh": Spec("xquad-en2zh", "xquad/en2zh", "queries.jsonl", "validation", corpus="xquad-zh"),
}


@dataclass
class Beir:
    """A BEIR-layout corpus with one query set and its relevance judgements."""

    doc_ids: list[str]
    titles: list[str]
    texts: list[str]
    queries: dict[str, str]  # only queries that have judgements, in file order
    qrels: dict[str, dict[str, int]]


def read_jsonl(path: Path) -> Iterable[dict]:
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            parts = line.rstrip("\n").split("\t")
            if i == 0 and parts[0] == "query-id" or len(parts) < 3:
                continue
            qrels.setdefault(parts[0], {})[parts[1]] = int(float(parts[2]))
    return qrels


def load_corpus(folder: Path) -> tuple[list[str], list[str], list[str]]:
    ids, titles, texts = [], [], []
    for row in read_jsonl(folder / "corpus.jsonl"):
        ids.append(str(row["_id"]))
        titles.append(row.get("title") or "")
        texts.append(row.get("text") or "")
    return ids, titles, texts


def load_queries(
    folder: Path, queries_file: str, split: str
) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    qrels = read_qrels(folder / "qrels" / f"{split}.tsv")
    queries = {str(q["_id"]): q["text"] for q in read_jsonl(folder / queries_file) if str(q["_id"]) in qrels}
    return queries, {q: qrels[q] for q in queries}


def load_beir(folder: Path, queries_file: str = "queries.jsonl", split: str = "test") -> Beir:
    ids, titles, texts = load_corpus(folder)
    queries, qrels = load_queries(folder, queries_file, split)
    return Beir(ids, titles, texts, queries, qrels)


def _rank_key(qid: str) -> str:
    return hashlib.sha1(qid.encode()).hexdigest()


def half(qids: Iterable[str], dev: bool) -> list[str]:
    """A fixed half of the queries (by a hash of the id): the dev half tunes, the other reports."""
    return [q for q in qids if (int(_rank_key(q)[:8], 16) % 2 == 0) == dev]


def subsample(qids: Sequence[str], n: int) -> list[str]:
    keep = set(sorted(qids, key=_rank_key)[:n])
    return [q for q in qids if q in keep]


def find_bench(path: str | None) -> Path:
    candidates = [Path(path)] if path else list(BENCH_CANDIDATES)
    for p in candidates:
        if (p / "scifact").exists() or (p / "xquad").exists() or path:
            return p
    raise SystemExit(f"no benchmark data at {', '.join(map(str, candidates))}: pass --bench PATH")
