"""Binary detection metrics, as one typed value per (model or check, data set)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass


@dataclass(frozen=True, slots=True)
class Metrics:
    n: int
    positives: int
    true_pos: int
    false_pos: int
    precision: float | None
    recall: float | None
    f1: float | None
    fpr: float | None

    def as_dict(self) -> dict[str, float | int | None]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def binary_metrics(labels: Sequence[int], fired: Sequence[bool]) -> Metrics:
    """Precision, recall, F1 and false-positive rate; ``None`` where undefined (no positives...)."""
    tp = sum(1 for y, f in zip(labels, fired, strict=True) if y == 1 and f)
    fp = sum(1 for y, f in zip(labels, fired, strict=True) if y == 0 and f)
    pos = sum(1 for y in labels if y == 1)
    neg = len(labels) - pos
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / pos if pos else None
    f1 = (
        2 * precision * recall / (precision + recall)
        if precision is not None and recall is not None and precision + recall
        else None
    )
    fpr = fp / neg if neg else None
    return Metrics(len(labels), pos, tp, fp, precision, recall, f1, fpr)
