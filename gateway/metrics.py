"""Prometheus metrics served at ``/metrics`` (OpenTelemetry metrics live in audit.telemetry)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from audit.record import AuditRecord

REGISTRY = CollectorRegistry()
REQUESTS = Counter(
    "warden_requests",
    "Requests by endpoint, status and verdict",
    ["endpoint", "status", "verdict"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "warden_request_latency_seconds",
    "End-to-end request latency",
    ["endpoint", "stream"],
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
TTFT = Histogram(
    "warden_time_to_first_token_seconds",
    "Time to first streamed token",
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CHECK_FIRED = Counter(
    "warden_check_verdicts", "Check verdicts by stage and check", ["stage", "check", "verdict"], registry=REGISTRY
)
TOKENS = Counter("warden_tokens", "Tokens by direction", ["direction"], registry=REGISTRY)


def observe(record: AuditRecord) -> None:
    REQUESTS.labels(record.endpoint, record.status.value, record.verdict.value).inc()
    if record.latency_ms is not None:
        LATENCY.labels(record.endpoint, str(record.stream).lower()).observe(record.latency_ms / 1000)
    if record.ttft_ms is not None:
        TTFT.observe(record.ttft_ms / 1000)
    for step in record.steps:
        if step.verdict.value != "pass":
            CHECK_FIRED.labels(
                step.stage.value, step.name if step.stage.value != "reasoning" else "step", step.verdict.value
            ).inc()
    if record.prompt_tokens:
        TOKENS.labels("input").inc(record.prompt_tokens)
    if record.completion_tokens:
        TOKENS.labels("output").inc(record.completion_tokens)


def render() -> bytes:
    return generate_latest(REGISTRY)
