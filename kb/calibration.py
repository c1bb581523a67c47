"""The two small models the answerer reads, and where their fitted coefficients live.

A sentence ranker (is this sentence the answer?) and a confidence model (does the material cover
this question at all?), plus the abstention threshold. ``kbq eval --calibrate`` fits them on the
golden set and stores them in ``kb/calibration.json``, one entry per embedder set: cosines and
fused scores differ between embedders, so a calibration fitted for one does not carry over.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

CALIBRATION_FILE = Path(__file__).with_name("calibration.json")
SENTENCE_FEATURES = (
    "dense",
    "coverage",
    "names",
    "chunk_coverage",
    "fused",
    "inverse_rank",
    "same_lang",
    "official",
    "lead",
    "question_match",
    "reply",
)
ANSWER_FEATURES = ("ranker", "dense", "unknown", "missing_name")


@dataclass(frozen=True)
class Logistic:
    coef: Mapping[str, float]
    bias: float

    def __call__(self, features: Mapping[str, float]) -> float:
        z = self.bias + sum(self.coef.get(k, 0.0) * v for k, v in features.items())
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))


@dataclass(frozen=True)
class Calibration:
    """The sentence ranker, the confidence model and the abstention threshold."""

    ranker: Logistic = field(
        default_factory=lambda: Logistic(
            {
                "dense": 4.0,
                "coverage": 3.0,
                "names": 1.0,
                "chunk_coverage": 1.0,
                "fused": 0.3,
                "inverse_rank": 1.0,
                "same_lang": 0.5,
                "official": 0.8,
                "lead": 0.5,
                "question_match": 2.0,
                "reply": 2.5,
            },
            -7.0,
        )
    )
    confidence: Logistic = field(
        default_factory=lambda: Logistic(
            {"ranker": 4.0, "dense": 6.0, "unknown": -2.0, "missing_name": -4.0}, -4.0
        )
    )
    threshold: float = 0.5

    @classmethod
    def load(cls, models: Collection[str], path: Path = CALIBRATION_FILE) -> Calibration:
        """The calibration fitted for this set of embedders (their scores and cosines differ),
        or the built-in defaults when none was fitted."""
        found = _read_calibrations(path).get(calibration_key(models))
        if found is None:
            log.warning("no calibration for embedders %s; using defaults", calibration_key(models))
            return cls()
        return found

    @classmethod
    def from_dict(cls, entry: Mapping) -> Calibration:
        models = [Logistic(dict(entry[k]["coef"]), float(entry[k]["bias"])) for k in ("ranker", "confidence")]
        return cls(models[0], models[1], float(entry["threshold"]))

    def save(self, models: Collection[str], path: Path = CALIBRATION_FILE) -> None:
        """Store this calibration for ``models``, keeping those of other embedder sets."""
        entries = {key: c.to_dict() for key, c in _read_calibrations(path).items()}
        entries[calibration_key(models)] = self.to_dict()
        partial = path.with_suffix(".tmp")
        partial.write_text(json.dumps(entries, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(partial, path)

    def to_dict(self) -> dict:
        return {
            "ranker": {"coef": dict(self.ranker.coef), "bias": self.ranker.bias},
            "confidence": {"coef": dict(self.confidence.coef), "bias": self.confidence.bias},
            "threshold": self.threshold,
        }


def calibration_key(models: Collection[str]) -> str:
    return "+".join(sorted(models))


def _read_calibrations(path: Path) -> dict[str, Calibration]:
    """Every well-formed entry of the calibration file; a broken file or entry is logged and skipped."""
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except (OSError, ValueError) as exc:
        log.error("ignoring unreadable calibration file %s: %s", path, exc)
        return {}
    entries = {}
    for key, entry in data.items() if isinstance(data, dict) else []:
        try:
            entries[key] = Calibration.from_dict(entry)
        except (TypeError, KeyError, ValueError):
            log.error("ignoring malformed calibration for %s in %s", key, path)
    return entries
