"""Every hand-set number kb reads, in one place: each with why it has its value and how it was chosen.

``how`` is one of ``grid`` (searched over a grid by the command named), ``fitted`` (learned by
``kbq eval --calibrate``; those live in ``kb/calibration.json``, not here) or ``by hand`` (chosen by eye,
with the reason). ``kbq eval --tune`` re-derives the ``grid`` numbers of the answer path on the golden
``tune`` split; ``python -m evals.public`` the public-benchmark fusion weights.

Two groups: what shapes the index (``INDEX``: changing it rebuilds the index, its digest is in the
manifest) and what shapes the answer at question time (``FUSION``, ``ANSWERING``: their digest is recorded
with every calibration, which warns when they changed after it was fitted).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

LEXICAL = "lexical"  # the BM25 signal's name in a weight table
DENSE = "dense"  # the weight of any embedder a weight table does not name
Weights = Mapping[tuple[str, str], Mapping[str, float]]


def tuned(value: Any, how: str, why: str) -> Any:
    """A dataclass field whose provenance is part of its definition."""
    assert how in ("grid", "fitted", "by hand"), how
    if isinstance(value, dict):
        return field(default_factory=lambda: dict(value), metadata={"how": how, "why": why})
    return field(default=value, metadata={"how": how, "why": why})


# ---------------------------------------------------------------- question time

# USE + MiniLM, the default: each embedder where it is strong. MiniLM carries English → English and USE
# (multilingual) everything that crosses languages; Chinese → Chinese fuses all three.
_PAIR_WEIGHTS = {
    ("en", "en"): {LEXICAL: 0.5, "use": 0.0, "minilm": 1.5},
    ("en", "zh"): {LEXICAL: 0.3, "use": 3.0, "minilm": 0.3},
    ("zh", "zh"): {LEXICAL: 0.75, "use": 1.0, "minilm": 0.75},
    ("zh", "en"): {LEXICAL: 0.8, "use": 1.6, "minilm": 0.8},
}
_DEFAULT_WEIGHTS = {
    ("en", "en"): {LEXICAL: 1.0, DENSE: 1.0},
    ("en", "zh"): {LEXICAL: 1.0, DENSE: 2.5},
    ("zh", "zh"): {LEXICAL: 1.0, DENSE: 1.0},
    ("zh", "en"): {LEXICAL: 1.0, DENSE: 2.5},
}


@dataclass(frozen=True)
class Fusion:
    """How retrieval sums its signals (kb/fusion.py)."""

    pair_weights: Weights = tuned(
        _PAIR_WEIGHTS,
        "grid",
        "USE + MiniLM per (question, passage) language: en-en, en-zh, zh-zh on the public dev queries "
        "(python -m evals.public: SciFact train, half of each XQuAD set); zh-en, which no public set "
        "covers, on the golden tune split (kbq eval --tune)",
    )
    default_weights: Weights = tuned(
        _DEFAULT_WEIGHTS,
        "grid",
        "any other embedder, or one alone: one dense weight, cross-language pairs weighted up (golden set)",
    )
    official_prior: float = tuned(
        0.6,
        "by hand",
        "added to FAQ and article passages so the official source wins close calls (kbq eval --tune)",
    )
    chunk_share: float = tuned(
        0.5,
        "by hand",
        "a passage's dense score mixes its own cosine with its best sentence's, so a key sentence matches "
        "without the rest of the chunk diluting it (kbq eval --tune)",
    )


@dataclass(frozen=True)
class Answering:
    """How the extractive answerer picks and joins sentences (kb/answer.py)."""

    search_k: int = tuned(
        10, "by hand", "passages retrieved per question; the nearest are listed on abstention"
    )
    candidate_chunks: int = tuned(
        8,
        "grid",
        "passages whose sentences are scored: 5 -> 8 puts a must-contain fact among the candidates for 0.975 "
        "of answerable tune questions instead of 0.926; 5-fold tune support 0.740 -> 0.748 (kbq eval --tune)",
    )
    relevance_passages: float = tuned(
        0.5,
        "grid",
        "how far the relevance model's best sentence cosine per passage reorders the passages whose sentences "
        "are scored (kb.fusion.lift_by_relevance), in fused spreads: the fact chunk of many misses sat at "
        "retrieval ranks 8-19. 0 -> 0.5 -> 1: a must-contain fact among the top 8 for 0.929 -> 0.952 -> 0.960 "
        "of the answerable round-13 tune questions under a calibration fitted without them; 5-fold on the "
        "other 1,810 tune questions (calibration refitted per fold) support 0.800 -> 0.811, support + min("
        "abstention P, R) 1.603 -> 1.616, with the adapter fixed 1.770 -> 1.771 -> 1.764 (2: 1.763); round 13 "
        "answered cold 1.665 -> 1.635 (two more answerable questions abstained on); on all 1,970, refitted per "
        "fold, 1.620 -> 1.631 (kbq eval --calibrate)",
    )
    max_sentences: int = tuned(
        5,
        "grid",
        "an answer is short; a fourth sentence carries the second half of two-part questions (5-fold tune "
        "support 0.719 -> 0.740; 2 sentences: 0.649); on the 850-question tune split a fifth one does too: of "
        "the answers holding one of two asked facts, the missing one was most often among the candidates "
        "ranked 4th to 8th (5-fold support 0.711 -> 0.758, support + min(abstention P, R) 1.297 -> 1.326) "
        "(kbq eval --tune). It counts the sentences chosen, not their translation: one language may say a "
        "sentence in two or three (kb.compose, a 1-n bead), and cutting those past the limit dropped the second "
        "fact (5-fold on the 1,970 tune questions with the adapter fixed, support 0.870 -> 0.876, support + "
        "min(abstention P, R) 1.784 -> 1.788; answers 2% longer in characters)",
    )
    neighbour_share: float = tuned(
        0.2,
        "grid",
        "another sentence joins the best one only above this share of its score: with four sentences, 0.1 "
        "let weak tangential ones in (5-fold tune support + min(abstention P, R) 1.420 -> 1.439)",
    )
    diversity: float = tuned(
        0.4,
        "grid",
        "after the best sentence, each next one is the best score less this many best scores per unit of its "
        "cosine to the closest sentence chosen (multilingual embedders: kb.answer.Answerer._next); 5-fold on "
        "the 2,450 tune questions with the adapter fixed, support + min(abstention P, R) 0 -> 0.15 -> 0.3 -> "
        "0.4 -> 0.5 -> 0.6: 1.785, 1.788, 1.790, 1.792, 1.788, 1.788 (support 0.893 -> 0.897 at 0.4); a bonus "
        "for question terms no chosen sentence holds added nothing (0.3: 1.786; beside 0.3 here, 1.791). With no "
        "penalty within a passage (left out: kb.answer.Answerer._next), on the 2,930: 0.3, 0.4, 0.5 -> 1.760, "
        "1.760, 1.761",
    )
    community_share: float = tuned(
        0.3,
        "grid",
        "under an official best sentence a community sentence (never a corrected claim) joins only above this "
        "share of its score; it was never (1.01): the fix a reply gives was lost (5-fold tune 1.395 -> 1.403)",
    )
    redundant: float = tuned(
        0.85,
        "grid",
        "sentence cosine above which a sentence from another passage restates one already chosen; "
        "0.85 -> 0.8 -> 0.75 measured on the golden set, then back to 0.85 on the 430-question tune split, "
        "whose round-3 questions ask for two facts the same passages state nearly alike (5-fold tune support "
        "+ min(abstention P, R) 1.318 -> 1.327, support 0.758 -> 0.767) (kbq eval --tune)",
    )
    counterpart: float = tuned(
        0.6,
        "grid",
        "multilingual sentence cosine at or above which a sentence in the asker's language says what a chosen "
        "sentence in the other language says, so it replaces it (and a quote in the other language that close "
        "to one already chosen is dropped as a restatement) (kbq eval --tune)",
    )
    twin_restates: float = tuned(
        0.4,
        "by hand",
        "a sentence left in the other language (no mutual match in its twin entry) restates a sentence of the "
        "twin entry, and is dropped, when the answer quotes that sentence, states its figures and their "
        "multilingual cosine is at least this: 0.43 for '主要原因是…维护成本…低' beside 'Its main argument was "
        "maintenance cost'; facts of their own sat at 0.27-0.38 ('detaching is a forced detach' beside 'a resize "
        "is seen'). Also the least a sentence must be close to join a translation for a figure it states, or "
        "as the rest of a sentence its twin says in two (kb.compose, a 1-n bead)",
    )
    other_lang_lead_only: bool = tuned(
        False,
        "grid",
        "True: when the answer has sentences in the asker's language, a sentence in the other language (with no "
        "counterpart, labelled with its source) stays only if it is the best one. Under the listwise ranker "
        "(evals.calibrate.fit_ranker) False is better on both 5-fold measures of the 430 tune questions, "
        "support + min(abstention P, R) 1.344 -> 1.354 (smoothed threshold) and 1.358 -> 1.390 (at 0.65), "
        "support 0.764 -> 0.794, language match 0.986 -> 0.984; under the pointwise ranker the two disagreed",
    )
    elsewhere_passages: int = tuned(
        10,
        "by hand",
        "passages searched, by a sentence's own vector, for an official sentence in the asker's language that "
        "says what it says, when neither the twin entry nor the candidates have one (kb.compose)",
    )
    min_sentence_chars: int = tuned(6, "by hand", "shorter spans are list markers or headings, never answers")
    same_corpus: float = tuned(
        0.5,
        "by hand",
        "the corpus confidence model serves an index at least this share of whose documents (by content) it was "
        "fitted on; a corpus mostly of others gets the portable one (kb.calibration)",
    )
    standout_sentences: int = tuned(
        10, "by hand", "fewer sentences of a language than this make no spread to stand out from (standout 0)"
    )
    nearest_on_abstain: int = tuned(3, "by hand", "passages listed for the reader to check on abstention")


@dataclass(frozen=True)
class Retrieval:
    """How retrieval gathers candidates from a store too large to score whole (kb/retrieve.py, kb/store.py)."""

    dense_candidates: int = tuned(
        200,
        "by hand",
        "rows each embedder's approximate search returns; the fused top 10 comes from these and the "
        "lexical ones (python -m benchmarks.scale: at 100 each, recall@10 against scoring every row was "
        "0.954 at 100,000 chunks and the candidates held 0.968 of the exact top 10; doubled for 1,000,000)",
    )
    lexical_candidates: int = tuned(200, "by hand", "rows the BM25 search returns, as for dense_candidates")
    sample_rows: int = tuned(
        2048,
        "by hand",
        "rows scored with every question so each signal is centred and scaled as over the whole corpus "
        "(kb.fusion.normalise); their mean and spread settle well below this (benchmarks.scale)",
    )
    nprobe: int = tuned(
        48,
        "by hand",
        "IVF lists searched per question: recall@10 against exact search at 1M chunks (benchmarks.scale)",
    )


# ---------------------------------------------------------------- index time


@dataclass(frozen=True)
class Splitter:
    """How ingest cuts documents into chunks and the indexer chunks into answer units."""

    article_max_chars: int = tuned(
        360, "by hand", "article chunk size: a paragraph or two of the InfoQ article"
    )
    faq_max_chars: int = tuned(1400, "by hand", "an FAQ entry stays one chunk unless it is very long")
    overlap_sentences: int = tuned(1, "by hand", "a split keeps one sentence of the piece before as context")
    comment_unit_chars: int = tuned(
        200,
        "grid",
        "a thread reply this short is quoted whole, its sentences lean on each other: 150-200 best on the "
        "golden set (5-fold support 0.892 -> 0.900); 250+ let long comments crowd out official sentences",
    )


@dataclass(frozen=True)
class TextRules:
    """Which runs of list items or table rows are one answer unit with their lead-in (kb/text.py)."""

    list_unit_chars: int = tuned(500, "by hand", "a list longer than this is quoted item by item")
    list_item_chars: int = tuned(120, "by hand", "a list item longer than this is a sentence of its own")
    table_unit_chars: int = tuned(1200, "by hand", "a table longer than this is quoted row by row")
    zh_share: float = tuned(
        0.15,
        "by hand",
        "text is Chinese when Chinese characters are at least this share of its letters: a Chinese "
        "question with English product names ('C5 的 ENA 要怎么开') stays Chinese",
    )


@dataclass(frozen=True)
class LexicalSettings:
    """The BM25 index (kb/lexical.py)."""

    cjk: str = tuned(
        "bigram", "grid", "Chinese as character bigrams beat jieba words on XQuAD zh (evals.public)"
    )
    k1: float = tuned(1.2, "by hand", "the usual BM25 default")
    b: float = tuned(0.75, "by hand", "the usual BM25 default")


@dataclass(frozen=True)
class StoreSettings:
    """How the local store lays out a large index (kb/local_store.py)."""

    exact_below: int = tuned(
        20_000,
        "by hand",
        "below this many chunks every question scores every row with an exact scan (today's corpus: 322); "
        "above it, candidates come from an IVF index (one question over 20,000 chunks: ~10 ms exact)",
    )
    ivf_lists_per_sqrt: float = tuned(
        4.0, "by hand", "IVF lists = this × √chunks, the usual FAISS guidance (4-16 √n)"
    )
    sentence_dtype: str = tuned(
        "float16",
        "by hand",
        "sentence vectors on disk: half the bytes of float32; cosines move by < 1e-3 (kbq eval unchanged)",
    )
    max_segments: int = tuned(
        8,
        "by hand",
        "an upsert writes a small segment; past this many, or past merge_share of the rows, ingest merges "
        "them into one (no re-embedding)",
    )
    merge_share: float = tuned(0.2, "by hand", "see max_segments")
    merge_below: int = tuned(
        2_000,
        "by hand",
        "a store this small is merged back into one segment at every ingest, so it gives exactly a fresh "
        "build's results (the shipped corpus: 376 chunks); a merge rewrites every row, ~0.5 s per 1,000 "
        "chunks, so larger stores keep their upsert segments (benchmarks.scale: 1-document upsert at 10,000)",
    )


@dataclass(frozen=True)
class IndexSettings:
    splitter: Splitter = field(default_factory=Splitter)
    text: TextRules = field(default_factory=TextRules)
    lexical: LexicalSettings = field(default_factory=LexicalSettings)
    store: StoreSettings = field(default_factory=StoreSettings)

    def to_dict(self) -> dict[str, Any]:
        return {
            **_plain(asdict(self)),
            "text_rules": source_digest(Path(__file__).with_name("text.py")),
        }

    def digest(self, parser_version: str = "") -> str:
        """Changes when any index setting, the text rules' code or the parsers' version changes."""
        return _digest({**self.to_dict(), "parsers": parser_version})


FUSION = Fusion()
ANSWERING = Answering()
RETRIEVAL = Retrieval()
INDEX = IndexSettings()


def source_digest(*paths: Path) -> str:
    """A version derived from the rules themselves: the code that applies them."""
    h = hashlib.sha256()
    for path in sorted(paths):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:12]


def answer_digest(fusion: Fusion = FUSION, answering: Answering = ANSWERING) -> str:
    """The question-time constants a calibration was fitted under (RETRIEVAL only matters above
    INDEX.store.exact_below chunks, where no calibration is fitted)."""
    return _digest({"fusion": _plain(asdict(fusion)), "answering": _plain(asdict(answering))})


def _plain(value: Any) -> Any:
    """JSON-able: weight tables keyed by 'question>passage' instead of tuples."""
    if isinstance(value, Mapping):
        return {(">".join(k) if isinstance(k, tuple) else k): _plain(v) for k, v in value.items()}
    return value


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]
