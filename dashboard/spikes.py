"""Which time buckets stand out: the share of requests a check acted on, against the usual share.

A bucket is a spike when at least ``min_requests`` fell in it and its acted-on share (flagged,
redacted, blocked or errored) is well above the median of the other buckets: ``factor`` times
it and at least ``min_jump`` higher (so 1% -> 3% on a quiet night is not an alarm).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from dashboard.data import SeriesPoint


@dataclass(frozen=True, slots=True)
class BucketRate:
    at: datetime
    total: int
    acted: int
    blocked: int

    @property
    def rate(self) -> float:
        return self.acted / self.total if self.total else 0.0


@dataclass(frozen=True, slots=True)
class Spike:
    at: datetime
    rate: float
    baseline: float
    total: int


def bucket_rates(series: Sequence[SeriesPoint]) -> list[BucketRate]:
    totals: dict[datetime, list[int]] = defaultdict(lambda: [0, 0, 0])
    for p in series:
        t = totals[p.at]
        t[0] += p.requests
        if p.verdict != "pass":
            t[1] += p.requests
        if p.verdict == "block":
            t[2] += p.requests
    return [BucketRate(at, *totals[at]) for at in sorted(totals)]


def find_spikes(
    rates: Sequence[BucketRate], *, min_requests: int = 5, factor: float = 3.0, min_jump: float = 0.15
) -> list[Spike]:
    spikes = []
    for i, bucket in enumerate(rates):
        if bucket.total < min_requests:
            continue
        others = [r.rate for j, r in enumerate(rates) if j != i and r.total >= min_requests]
        baseline = statistics.median(others) if others else 0.0
        if others and bucket.rate >= baseline * factor and bucket.rate - baseline >= min_jump:
            spikes.append(Spike(bucket.at, bucket.rate, baseline, bucket.total))
    return spikes
