"""How a detector's tiers combine into one score, and when the slow tier is asked.

Three signals: the n-gram model's logit (fast, learns vocabulary), the hand-written cues'
score, and the semantic encoder's logit (slower, understands paraphrase and language). They
are combined by a logistic *stacker*, ``sigmoid(bias + w·signals)``, whose weights were fitted
on scores each model gave to rows of families it never saw (``policies.training.
operating_point``), and whose bias puts the chosen operating point at 0.5, so a policy's
``threshold: 0.5`` means "as measured".

The semantic tier is asked only when the first tier cannot decide: with the encoder's logit
anywhere in its usual range (``semantic_range``, the 1st and 99th percentiles it gave in the
folds), would the combined score land on both sides of the threshold? If not, the first
tier's bound is the answer and the encoder is not run.

The stackers live in ``policies/models/semantic/tiers.json``, next to the encoder they go with.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from policies.engines.classifier import sigmoid
from policies.engines.encoder import SEMANTIC_DIR

__all__ = ["TIERS_FILE", "Stacker", "load_stackers", "logit_of", "sigmoid"]

TIERS_FILE = "tiers.json"


@dataclass(frozen=True, slots=True)
class Stacker:
    head: str
    bias: float
    ngram: float
    cues: float
    semantic: float
    semantic_range: tuple[float, float]

    def logit(self, ngram: float, cues: float, semantic: float) -> float:
        return self.bias + self.ngram * ngram + self.cues * cues + self.semantic * semantic

    def bounds(self, ngram: float, cues: float) -> tuple[float, float]:
        """The combined logit's lowest and highest value over the encoder's usual range."""
        lo, hi = (self.logit(ngram, cues, s) for s in self.semantic_range)
        return (lo, hi) if lo <= hi else (hi, lo)


def logit_of(p: float) -> float:
    p = min(max(p, 1e-9), 1 - 1e-9)
    return math.log(p / (1 - p))


@cache
def load_stackers(directory: Path = SEMANTIC_DIR) -> dict[str, Stacker]:
    path = directory / TIERS_FILE
    if not path.exists():
        return {}
    raw = json.loads(path.read_text(encoding="utf-8"))
    out = {}
    for check, entry in raw.get("checks", {}).items():
        weights = entry["weights"]
        out[check] = Stacker(
            head=str(entry["head"]),
            bias=float(entry["bias"]),
            ngram=float(weights.get("ngram", 0.0)),
            cues=float(weights.get("cues", 0.0)),
            semantic=float(weights["semantic"]),
            semantic_range=(float(entry["semantic_range"][0]), float(entry["semantic_range"][1])),
        )
    return out
