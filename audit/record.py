"""The audit record as the pipeline hands it to the writer: one request, its ordered steps.

These are plain typed values, independent of the database; ``audit.models`` maps them to
tables and ``audit.chain`` hashes their canonical form. Spans never carry raw values: at
most a keyed fingerprint, so equal values can be matched without being readable.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Stage(StrEnum):
    input = "input"
    upstream = "upstream"
    reasoning = "reasoning"
    stream = "stream"
    output = "output"
    response = "response"


class Verdict(StrEnum):
    """A step's or a request's outcome, ordered from mildest to strongest."""

    passed = "pass"
    flag = "flag"
    redact = "redact"
    block = "block"
    error = "error"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Verdict.passed: 0, Verdict.flag: 1, Verdict.redact: 2, Verdict.error: 3, Verdict.block: 4}


class Status(StrEnum):
    """How the request ended, independent of what the checks decided."""

    ok = "ok"
    blocked = "blocked"
    client_aborted = "client_aborted"
    upstream_error = "upstream_error"
    check_unavailable = "check_unavailable"
    error = "error"


class Ruling(StrEnum):
    """A reviewer's ruling on a request (``audit.review.ReviewRecord``)."""

    confirm = "confirm"
    false_positive = "false_positive"
    escalate = "escalate"


class ChainKind(StrEnum):
    """What a hash chain links: request records, review records or erasure records."""

    requests = "requests"
    reviews = "reviews"
    erasures = "erasures"


@dataclass(frozen=True, slots=True)
class SpanRecord:
    entity_type: str
    start: int
    end: int
    score: float = 1.0
    #: HMAC-SHA256 of the raw value under the audit key; never the value itself
    fingerprint: str | None = None


@dataclass(slots=True)
class StepRecord:
    seq: int
    stage: Stage
    name: str
    verdict: Verdict
    score: float | None = None
    spans: list[SpanRecord] = field(default_factory=list)
    latency_ms: float = 0.0
    #: False when the step ran in monitor mode: ``verdict`` is what enforce would have done
    enforced: bool = True
    detail: dict[str, Any] = field(default_factory=dict)
    #: reasoning steps only: the step's text, as the policy's ``audit.store_text`` allows
    text: str | None = None
    at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class AuditRecord:
    request_id: str
    started_at: datetime
    tenant: str
    key_id: str
    endpoint: str
    model_requested: str
    stream: bool
    policy_name: str
    policy_version: str
    client_addr: str | None = None
    finished_at: datetime | None = None
    model_served: str | None = None
    input_text: str | None = None
    output_text: str | None = None
    verdict: Verdict = Verdict.passed
    status: Status = Status.ok
    http_status: int = 200
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    trace_id: str | None = None
    error: str | None = None
    steps: list[StepRecord] = field(default_factory=list)
    # Filled in by the writer's chain, not by the pipeline.
    chain_id: str | None = None
    seq: int | None = None
    prev_hash: str | None = None
    hash: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
