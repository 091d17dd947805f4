"""Build the toxicity lexicon artefact from the shipped word lists.

Surge AI's profanity list (MIT) gives each term a severity from 1 to 3; LDNOOBW (CC-BY-4.0,
attribution in the manifest) has none and counts as medium. A term's weight is what one
occurrence adds (noisy-OR) to the toxicity score: a mild word alone never reaches the
default threshold, a slur or two medium words do.
"""

from __future__ import annotations

import json
from pathlib import Path

from policies.checks.toxicity import lexicon_key

MILD, MEDIUM, SEVERE = 0.25, 0.45, 0.7


def severity_weight(severity: float) -> float:
    if severity >= 2.5:
        return SEVERE
    return MEDIUM if severity >= 1.5 else MILD


def build_lexicon(surge: Path, ldnoobw: Path) -> dict[str, float]:
    terms: dict[str, float] = {}
    for line in ldnoobw.read_text(encoding="utf-8").splitlines():
        if line.strip():
            key = lexicon_key(json.loads(line)["text"])
            if key:
                terms[key] = MEDIUM
    for line in surge.read_text(encoding="utf-8").splitlines():
        if line.strip():
            raw = json.loads(line)
            key = lexicon_key(raw["text"])
            if key:
                # Surge's graded severity wins over LDNOOBW's flat "medium".
                terms[key] = severity_weight(float(raw.get("severity") or 1.0))
    return dict(sorted(terms.items()))
