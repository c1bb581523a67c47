"""The two small models the answerer reads, their features, and where their fitted coefficients live.

A sentence ranker (is this sentence the answer?) and a confidence model (does the material cover this
question?), plus the abstention threshold and the relevance model's adapter; and a portable ranker,
confidence model and threshold, fitted without the adapter, which answer on a corpus other than the one the
calibration was fitted on (``Calibration.for_corpus``). Each
model's features are one frozen dataclass here: its fields are the feature names, the answerer fills every
one, and a calibration whose coefficients name other features is refused with a message instead of silently
weighing a feature 0.

``kbq eval --calibrate`` fits them on the golden ``tune`` split and stores them in
``kb/calibration.json``, one entry per embedder set (cosines and fused scores differ between embedders),
with its provenance: the commit, a hash of the questions, a hash of the question-time constants it was
fitted under (kb.tuning.answer_digest), the source digests of the corpus's documents and the cross-validated
figures of both confidence models.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from kb.tuning import ANSWERING, answer_digest

log = logging.getLogger(__name__)

CALIBRATION_FILE = Path(__file__).with_name("calibration.json")


@dataclass(frozen=True)
class SentenceFeatures:
    """What the ranker reads about one candidate sentence. Few on purpose: the passage's fused score, its
    question-term coverage, the sentence's language and its lead position were dropped because, fitted
    beside these, they only helped in-sample (5-fold on tune: support 0.748 -> 0.764 without them)."""

    dense: float  # the sentence's cosine to the question, weighted over embedders for the language pair
    coverage: float  # share of the question's terms in the sentence
    names: float  # share of the things the question names that the sentence (or its heading) mentions
    inverse_rank: float  # 1 / the passage's retrieval rank
    official: float  # FAQ or article, not a thread comment
    question_match: float  # the passage's best sentence cosine
    reply: float  # a thread reply: share of the question's terms in the comment it replies to
    relevance: float  # the relevance model's cosine between the question and the sentence
    named_lang: float  # the sentence is in a language the question names (kb.question.named_langs)

    def vector(self) -> tuple[float, ...]:
        return tuple(
            getattr(self, name) for name in self.__dataclass_fields__
        )  # no deep copy, unlike astuple


@dataclass(frozen=True)
class AnswerFeatures:
    """What the confidence model reads about the question and the sentences chosen to answer it."""

    ranker: float  # the best sentence's ranker score
    dense: float  # the best candidate cosine
    unknown: float  # share of the terms of what the question asks that nothing quotable in the corpus uses
    missing_name: float  # what the question asks names something nothing quotable in the corpus mentions
    unmatched_name: float  # share of the question's names that no chosen sentence (or heading) mentions
    coverage: float  # share of the question's terms that the chosen sentences (and headings) hold
    asks_unmet: float  # asks for a price, date, count… (ASKS) no chosen sentence about what it names holds
    across: float  # the best sentence is in the other language than the question's
    relevance: float  # the relevance model's best cosine between the question and a sentence retrieval scored
    chinese: float  # the question is Chinese: its terms are character pairs and its cosines run otherwise
    standout: float  # standard deviations the best sentence cosine stands above the rest (portable)

    def vector(self) -> tuple[float, ...]:
        return tuple(
            getattr(self, name) for name in self.__dataclass_fields__
        )  # no deep copy, unlike astuple


def names_of(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


SENTENCE_FEATURES = names_of(SentenceFeatures)
ANSWER_FEATURES = names_of(AnswerFeatures)
# Two confidence models. The corpus model reads absolute cosines and the corpus's own words: on the corpus it
# was fitted on they say most (5-fold tune support + min(abstention P, R) 1.527; with ``standout`` beside them
# 1.519). On another corpus or language pair those run at other levels: fitted on the C5 material, the relevance
# cosine alone puts English questions over Chinese-only encyclopedia paragraphs 4.6 logits under the threshold,
# so all were abstained on (python -m evals.open_domain). The portable model reads only features that mean the
# same anywhere; it serves a corpus mostly other than the one the calibration was fitted on. Whether what the
# question asks uses words and names the material never does means the same on any corpus written in the
# question's language (kb.answer reads neither across languages): with them, the portable model's 5-fold tune
# figures went 0.764, 0.444 / 0.240 -> 0.779, 0.649 / 0.480 (support, abstention P / R), and with half the
# encyclopedia paragraphs indexed, abstention 0.88 / 0.09 -> 0.81 / 0.38 (python -m evals.open_domain).
CORPUS_FEATURES = tuple(n for n in ANSWER_FEATURES if n != "standout")
PORTABLE_FEATURES = ("standout", "asks_unmet", "across", "chinese", "unknown", "missing_name")


class CalibrationError(ValueError):
    """A stored calibration does not fit the features this kbq computes."""


@dataclass(frozen=True)
class Logistic:
    """``sigmoid(bias + coef · features)``; ``coef`` names exactly the features of ``names``."""

    coef: Mapping[str, float]
    bias: float
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.names and set(self.coef) != set(self.names):
            missing = sorted(set(self.names) - set(self.coef))
            unknown = sorted(set(self.coef) - set(self.names))
            raise CalibrationError(
                f"coefficients do not match the features: missing {missing}, unknown {unknown}; "
                "run `kbq eval --calibrate`"
            )

    def __call__(self, features: SentenceFeatures | AnswerFeatures) -> float:
        names = self.names or names_of(type(features))
        z = self.bias + sum(self.coef[k] * v for k, v in zip(names, features.vector(), strict=True))
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))

    def to_dict(self) -> dict[str, Any]:
        return {"coef": dict(self.coef), "bias": self.bias}

    @classmethod
    def from_dict(cls, entry: Mapping[str, Any], names: tuple[str, ...]) -> Logistic:
        return cls(dict(entry["coef"]), float(entry["bias"]), names)


@dataclass(frozen=True, eq=False)
class Adapter:
    """A low-rank correction of the relevance model's question vectors for one corpus: ``q + up @ (down.T @
    q)``, fitted on the tune questions so that a question's vector lands nearer the sentences that state
    its facts (evals.adapter). Each sentence's cosine to the question, the ranker's and the confidence
    model's strongest feature, then reads what tune taught about this material's answers. Only on the
    corpus it was fitted on: on another one it would pull questions toward this one's answers
    (``Calibration.for_corpus`` drops it)."""

    up: np.ndarray  # (dimensions, rank)
    down: np.ndarray  # (dimensions, rank)

    def __call__(self, question: np.ndarray) -> np.ndarray:
        return (question + self.up @ (self.down.T @ question)).astype(np.float32)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Adapter) and all(
            np.array_equal(a, b) for a, b in ((self.up, other.up), (self.down, other.down))
        )

    __hash__ = None  # type: ignore[assignment]  # equal by value, and arrays are mutable

    def to_dict(self) -> dict[str, list[str]]:
        """Each matrix as one line of numbers per rank: a few readable lines in the calibration file."""
        return {
            name: [" ".join(f"{v:.5g}" for v in column) for column in matrix.T]
            for name, matrix in (("up", self.up), ("down", self.down))
        }

    @classmethod
    def from_dict(cls, entry: Mapping[str, list[str]]) -> Adapter:
        try:
            up, down = (
                np.array([[float(v) for v in col.split()] for col in entry[k]], np.float32).T
                for k in ("up", "down")
            )
        except ValueError as exc:
            raise CalibrationError(f"malformed adapter ({exc}); run `kbq eval --calibrate`") from None
        if up.ndim != 2 or up.shape != down.shape:
            raise CalibrationError(f"adapter matrices differ in shape: {up.shape} and {down.shape}")
        return cls(up, down)


_DEFAULT_RANKER = {
    "dense": 4.0,
    "coverage": 3.0,
    "names": 1.0,
    "inverse_rank": 1.0,
    "official": 0.8,
    "question_match": 2.0,
    "reply": 2.5,
    "relevance": 0.0,
    "named_lang": 0.0,
}
_DEFAULT_CONFIDENCE = {
    "ranker": 4.0,
    "dense": 6.0,
    "unknown": -2.0,
    "missing_name": -4.0,
    "unmatched_name": 0.0,
    "coverage": 0.0,
    "asks_unmet": 0.0,
    "across": 0.0,
    "relevance": 0.0,
    "chinese": 0.0,
    "standout": 0.0,
}


@dataclass(frozen=True)
class Calibration:
    """The sentence ranker, the confidence model, the abstention threshold, and where they came from; with
    the portable ranker, confidence model and threshold for another corpus (``for_corpus``)."""

    ranker: Logistic = field(default_factory=lambda: Logistic(_DEFAULT_RANKER, -7.0, SENTENCE_FEATURES))
    confidence: Logistic = field(default_factory=lambda: Logistic(_DEFAULT_CONFIDENCE, -4.0, ANSWER_FEATURES))
    threshold: float = 0.5
    provenance: Mapping[str, Any] = field(default_factory=dict, compare=False)
    # (ranker, confidence model, threshold) for another corpus: fitted without the adapter, the confidence
    # model on PORTABLE_FEATURES
    portable: tuple[Logistic, Logistic, float] | None = None
    adapter: Adapter | None = None  # the relevance model's question vectors, corrected for this corpus

    def for_corpus(self, digests: Collection[str]) -> Calibration:
        """This calibration for an index whose documents have the source ``digests``: as it is when at least
        ``ANSWERING.same_corpus`` of them are documents it was fitted on (``provenance["documents"]``, digests
        too: the same content, not only the same file names), else with its portable confidence model and
        no adapter."""
        fitted = set(self.provenance.get("documents") or ())
        if not fitted or self.portable is None or not digests:
            return self
        if sum(d in fitted for d in digests) >= ANSWERING.same_corpus * len(digests):
            return self
        log.warning(
            "the index is mostly other documents than the calibration was fitted on: answering with its "
            "portable confidence model; `kbq eval --calibrate` on golden questions of this corpus fits its own"
        )
        ranker, confidence, threshold = self.portable
        serving = {**self.provenance, "serving": "portable"}
        return replace(
            self,
            ranker=ranker,
            confidence=confidence,
            threshold=threshold,
            portable=None,
            provenance=serving,
            adapter=None,
        )

    @property
    def serving(self) -> str:
        """Which confidence model answers: ``corpus``, or ``portable`` on another corpus (``for_corpus``)."""
        return str(self.provenance.get("serving", "corpus"))

    MODELS: ClassVar[tuple[tuple[str, tuple[str, ...]], ...]] = (
        ("ranker", SENTENCE_FEATURES),
        ("confidence", ANSWER_FEATURES),
    )

    @classmethod
    def load(cls, models: Collection[str], path: Path = CALIBRATION_FILE) -> Calibration:
        """The calibration fitted for this set of embedders, or the built-in defaults when none was
        fitted. Raises CalibrationError when the stored one names other features than these."""
        entry = _read_entries(path).get(calibration_key(models))
        if entry is None:
            log.warning("no calibration for embedders %s; using defaults", calibration_key(models))
            return cls()
        found = cls.from_dict(entry)
        fitted_under = found.provenance.get("tuning")
        if fitted_under and fitted_under != answer_digest():
            log.warning(
                "the calibration for %s was fitted under other question-time constants (kb/tuning.py "
                "changed since); refit it with `kbq eval --calibrate`",
                calibration_key(models),
            )
        return found

    @classmethod
    def from_dict(cls, entry: Mapping) -> Calibration:
        try:
            ranker, confidence = (Logistic.from_dict(entry[k], names) for k, names in cls.MODELS)
            portable = entry.get("portable")
            other = (
                (
                    Logistic.from_dict(portable["ranker"], SENTENCE_FEATURES)
                    if "ranker" in portable
                    else ranker,  # fitted before the adapter: the one ranker served everywhere
                    Logistic.from_dict(portable, ANSWER_FEATURES),
                    float(portable["threshold"]),
                )
                if portable
                else None
            )
            adapter = Adapter.from_dict(entry["adapter"]) if entry.get("adapter") else None
            return cls(
                ranker,
                confidence,
                float(entry["threshold"]),
                dict(entry.get("provenance") or {}),
                other,
                adapter,
            )
        except (TypeError, KeyError) as exc:
            raise CalibrationError(
                f"malformed calibration entry ({exc}); run `kbq eval --calibrate`"
            ) from None

    def save(self, models: Collection[str], path: Path = CALIBRATION_FILE) -> None:
        """Store this calibration for ``models``, keeping those of other embedder sets."""
        entries = _read_entries(path)
        entries[calibration_key(models)] = self.to_dict()
        partial = path.with_suffix(".tmp")
        partial.write_text(json.dumps(entries, indent=1, sort_keys=True, ensure_ascii=False) + "\n", "utf-8")
        os.replace(partial, path)

    def to_dict(self) -> dict:
        return {
            "ranker": self.ranker.to_dict(),
            "confidence": self.confidence.to_dict(),
            "threshold": self.threshold,
            "provenance": dict(self.provenance),
            **(
                {
                    "portable": {
                        "ranker": self.portable[0].to_dict(),
                        **self.portable[1].to_dict(),
                        "threshold": self.portable[2],
                    }
                }
                if self.portable
                else {}
            ),
            **({"adapter": self.adapter.to_dict()} if self.adapter else {}),
        }


def calibration_key(models: Collection[str]) -> str:
    return "+".join(sorted(models))


def _read_entries(path: Path) -> dict[str, Any]:
    """The raw entries of the calibration file; an unreadable file is logged and treated as empty."""
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except (OSError, ValueError) as exc:
        log.error("ignoring unreadable calibration file %s: %s", path, exc)
        return {}
    return data if isinstance(data, dict) else {}
