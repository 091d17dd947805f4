"""A fixed, seeded train/validation split by group.

Rows of one group (translations, near-duplicate jailbreaks, a document and its injected
copies, one behaviour rewritten by several attack methods) always land on the same side.
A source that ships its own split (BIPIA: train and test contexts with disjoint attacks)
keeps it: its ``test`` rows are validation.
"""

from __future__ import annotations

import hashlib

from policies.training.corpora import Row

SEED = "warden-detection-v1"
VALIDATION_FRACTION = 0.2


def is_validation(row: Row, seed: str = SEED, fraction: float = VALIDATION_FRACTION) -> bool:
    if row.split:
        return row.split == "test"
    digest = hashlib.sha256(f"{seed}:{row.group}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction
