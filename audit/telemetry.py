"""OpenTelemetry for Warden: providers, the tracer, metric instruments, spans from a record.

``configure(exporter)`` installs a TracerProvider and a MeterProvider. The exporter is
``none`` (the default: spans still get real trace ids, which audit records store, but
nothing leaves the process), ``console``, or ``otlp`` (endpoint, headers and protocol from
the standard ``OTEL_EXPORTER_OTLP_*`` variables; ``http/protobuf`` unless
``OTEL_EXPORTER_OTLP_PROTOCOL=grpc``). Without an argument it reads ``OTEL_TRACES_EXPORTER``;
metrics use ``OTEL_METRICS_EXPORTER`` when set, else the same choice as traces. Names come from ``audit.semconv``.

Two ways to get spans: live, with ``tracer()`` around each stage and check; or after the
fact, ``emit_record_spans(record)``, which rebuilds the request span, one span per stage and
one per check from the record's timestamps and latencies (nothing on the hot path), and
sets ``record.trace_id``. ``record_metrics(record)`` updates the instruments; they are Warden's
only request metrics, and ``gateway.metrics`` serves them at ``/metrics`` through a reader
passed in ``metric_readers`` (names in README, "Metrics").
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import groupby
from typing import Final, Literal

from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.util.types import AttributeValue

from audit import semconv as sc
from audit.record import AuditRecord, Stage, StepRecord, Verdict
from audit.record import Status as RecordStatus

Exporter = Literal["none", "console", "otlp"]
EXPORTERS: tuple[Exporter, ...] = ("none", "console", "otlp")
SCOPE = "warden"
#: check stages; the others (upstream, response) are not checks
CHECK_STAGES = frozenset({Stage.input, Stage.stream, Stage.output, Stage.reasoning})
_NOT_ERRORS = frozenset({RecordStatus.ok, RecordStatus.blocked, RecordStatus.client_aborted})
# Histogram buckets. The SDK's default (0 to 10,000) suits milliseconds, not the seconds these
# record: request and first-token buckets are the ones /metrics served before it read these
# instruments; tokens use the GenAI conventions' advice (powers of 4).
REQUEST_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
TTFT_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CHECK_BUCKETS: Final = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
TOKEN_BUCKETS: Final = tuple(float(4**n) for n in range(14))


@dataclass(frozen=True, slots=True)
class Instruments:
    requests: metrics.Counter
    check_duration: metrics.Histogram
    request_duration: metrics.Histogram
    time_to_first_token: metrics.Histogram
    token_usage: metrics.Histogram

    @staticmethod
    def create(meter: metrics.Meter) -> Instruments:
        return Instruments(
            requests=meter.create_counter(sc.METRIC_REQUESTS, "{request}", "Requests by verdict and status"),
            check_duration=meter.create_histogram(
                sc.METRIC_CHECK_DURATION, "s", "Time a check took", explicit_bucket_boundaries_advisory=CHECK_BUCKETS
            ),
            request_duration=meter.create_histogram(
                sc.METRIC_REQUEST_DURATION, "s", "Request duration", explicit_bucket_boundaries_advisory=REQUEST_BUCKETS
            ),
            time_to_first_token=meter.create_histogram(
                sc.METRIC_TIME_TO_FIRST_TOKEN,
                "s",
                "Time to first token",
                explicit_bucket_boundaries_advisory=TTFT_BUCKETS,
            ),
            token_usage=meter.create_histogram(
                sc.METRIC_TOKEN_USAGE,
                "{token}",
                "Tokens per request",
                explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
            ),
        )


@dataclass(frozen=True, slots=True)
class Telemetry:
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    instruments: Instruments
    #: what ``exporter`` chose (None for ``none``), for inspection
    span_exporter: SpanExporter | None = None
    metric_exporter: MetricExporter | None = None
    #: False when no span processor would receive a span: then only trace ids are made
    spans_wanted: bool = True

    def tracer(self) -> Tracer:
        return self.tracer_provider.get_tracer(SCOPE)

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


_current: Telemetry | None = None


def _choose(explicit: str | None, env: str) -> Exporter:
    value = (explicit or os.environ.get(env) or "none").strip().lower()
    if value not in EXPORTERS:
        raise ValueError(f"telemetry exporter {value!r}: Warden supports {', '.join(EXPORTERS)}")
    return value


def _grpc() -> bool:
    return os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf").strip().lower() == "grpc"


def _span_exporter(kind: Exporter) -> SpanExporter | None:
    if kind == "console":
        return ConsoleSpanExporter()
    if kind == "otlp":
        if _grpc():
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpans

            return GrpcSpans()
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpans

        return HttpSpans()
    return None


def _metric_exporter(kind: Exporter) -> MetricExporter | None:
    if kind == "console":
        return ConsoleMetricExporter()
    if kind == "otlp":
        if _grpc():
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetrics

            return GrpcMetrics()
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetrics

        return HttpMetrics()
    return None


def configure(
    exporter: str | None = None,
    *,
    metrics_exporter: str | None = None,
    service_name: str = "warden",
    span_exporter: SpanExporter | None = None,
    metric_readers: Sequence[MetricReader] = (),
    set_global: bool = True,
) -> Telemetry:
    """Install providers; ``span_exporter`` / ``metric_readers`` add test or custom sinks.

    ``set_global`` also registers them with the OpenTelemetry API (which allows that once per
    process); ``tracer()`` and ``record_metrics`` use the latest ``configure`` either way.
    """
    global _current
    traces_kind = _choose(exporter, "OTEL_TRACES_EXPORTER")
    # Metrics follow the traces' exporter unless set on their own.
    metrics_kind = _choose(metrics_exporter or os.environ.get("OTEL_METRICS_EXPORTER") or traces_kind, "-")
    resource = Resource.create({SERVICE_NAME: service_name})
    tracer_provider = TracerProvider(resource=resource)
    chosen = _span_exporter(traces_kind)
    if chosen is not None:
        tracer_provider.add_span_processor(BatchSpanProcessor(chosen))
    if span_exporter is not None:
        tracer_provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    readers = list(metric_readers)
    metric_exp = _metric_exporter(metrics_kind)
    if metric_exp is not None:
        readers.append(PeriodicExportingMetricReader(metric_exp))
    meter_provider = MeterProvider(resource=resource, metric_readers=readers)
    if set_global:
        trace.set_tracer_provider(tracer_provider)
        metrics.set_meter_provider(meter_provider)
    instruments = Instruments.create(meter_provider.get_meter(SCOPE))
    wanted = chosen is not None or span_exporter is not None
    _current = Telemetry(tracer_provider, meter_provider, instruments, chosen, metric_exp, wanted)
    return _current


def current() -> Telemetry | None:
    return _current


def tracer() -> Tracer:
    if _current is not None:
        return _current.tracer()
    return trace.get_tracer(SCOPE)


def _instruments() -> Instruments:
    if _current is not None:
        return _current.instruments
    return Instruments.create(metrics.get_meter(SCOPE))


def request_attributes(record: AuditRecord) -> dict[str, AttributeValue]:
    attrs: dict[str, AttributeValue] = {
        sc.GEN_AI_OPERATION_NAME: sc.operation_for(record.endpoint),
        sc.GEN_AI_REQUEST_MODEL: record.model_requested,
        sc.GEN_AI_REQUEST_STREAM: record.stream,
        sc.WARDEN_REQUEST_ID: record.request_id,
        sc.WARDEN_TENANT: record.tenant,
        sc.WARDEN_ENDPOINT: record.endpoint,
        sc.WARDEN_VERDICT: record.verdict.value,
        sc.WARDEN_STATUS: record.status.value,
        sc.WARDEN_POLICY_NAME: record.policy_name,
        sc.WARDEN_POLICY_VERSION: record.policy_version,
    }
    if record.model_served:
        attrs[sc.GEN_AI_RESPONSE_MODEL] = record.model_served
    if record.finish_reason:
        attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] = [record.finish_reason]
    if record.prompt_tokens is not None:
        attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] = record.prompt_tokens
    if record.completion_tokens is not None:
        attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] = record.completion_tokens
    return attrs


def check_attributes(step: StepRecord) -> dict[str, AttributeValue]:
    attrs: dict[str, AttributeValue] = {
        sc.WARDEN_STAGE: step.stage.value,
        sc.WARDEN_CHECK: step.name,
        sc.WARDEN_VERDICT: step.verdict.value,
        sc.WARDEN_CHECK_ENFORCED: step.enforced,
        sc.WARDEN_STEP_SEQ: step.seq,
        sc.WARDEN_CHECK_SPANS: len(step.spans),
    }
    if step.score is not None:
        attrs[sc.WARDEN_CHECK_SCORE] = step.score
    return attrs


def _ns(value: datetime) -> int:
    return int(value.timestamp() * 1_000_000_000)


def _end_of(step: StepRecord, fallback: datetime) -> datetime:
    return step.at or fallback


def _start_of(step: StepRecord, fallback: datetime) -> datetime:
    return _end_of(step, fallback) - timedelta(milliseconds=step.latency_ms)


def emit_record_spans(record: AuditRecord, context: Context | None = None) -> str:
    """Spans for a finished request (request > stage > check); sets and returns ``record.trace_id``.

    ``context`` is the parent (e.g. from the client's ``traceparent``), if any.
    """
    if _current is not None and not _current.spans_wanted:
        # Nobody receives spans (exporter ``none``): building ~20 of them per request would be
        # pure cost. The record still gets a trace id, the parent's when there is one.
        parent = trace.get_current_span(context).get_span_context()
        ids = _current.tracer_provider.id_generator
        trace_id = format(parent.trace_id if parent.is_valid else ids.generate_trace_id(), "032x")
        record.trace_id = record.trace_id or trace_id
        return trace_id
    started = record.started_at
    finished = record.finished_at or (started + timedelta(milliseconds=record.latency_ms or 0.0))
    t = tracer()
    name = f"{sc.operation_for(record.endpoint)} {record.model_requested}"
    root = t.start_span(name, context, SpanKind.SERVER, attributes=request_attributes(record), start_time=_ns(started))
    if record.status not in _NOT_ERRORS:  # a policy block is an outcome, not a failure
        root.set_status(Status(StatusCode.ERROR, record.error or record.status.value))
    ctx = trace.set_span_in_context(root, context)
    for stage, group in groupby(record.steps, key=lambda s: s.stage):
        steps = list(group)
        _emit_stage(t, ctx, stage, steps, started)
    root.end(_ns(finished))
    trace_id = format(root.get_span_context().trace_id, "032x")
    record.trace_id = record.trace_id or trace_id
    return trace_id


def _emit_stage(t: Tracer, ctx: Context, stage: Stage, steps: list[StepRecord], fallback: datetime) -> None:
    begin = min(_start_of(s, fallback) for s in steps)
    end = max(_end_of(s, fallback) for s in steps)
    worst = max((s.verdict for s in steps), key=lambda v: v.rank)
    span: Span = t.start_span(
        f"{sc.SPAN_STAGE} {stage.value}",
        ctx,
        attributes={sc.WARDEN_STAGE: stage.value, sc.WARDEN_VERDICT: worst.value},
        start_time=_ns(begin),
    )
    if stage in CHECK_STAGES:
        stage_ctx = trace.set_span_in_context(span, ctx)
        for step in steps:
            child = t.start_span(
                f"{sc.SPAN_CHECK} {step.name}",
                stage_ctx,
                attributes=check_attributes(step),
                start_time=_ns(_start_of(step, fallback)),
            )
            if step.verdict is Verdict.error:
                child.set_status(Status(StatusCode.ERROR, "check failed"))
            child.end(_ns(_end_of(step, fallback)))
    span.end(_ns(end))


def record_metrics(record: AuditRecord, handle: Telemetry | None = None) -> None:
    """Count a finished request; ``handle`` is the ``configure`` result to use (default: the latest)."""
    inst = handle.instruments if handle is not None else _instruments()
    model = record.model_requested
    operation = sc.operation_for(record.endpoint)
    inst.requests.add(
        1,
        {
            sc.WARDEN_VERDICT: record.verdict.value,
            sc.WARDEN_STATUS: record.status.value,
            sc.GEN_AI_REQUEST_MODEL: model,
            sc.WARDEN_POLICY_NAME: record.policy_name,
            sc.WARDEN_TENANT: record.tenant,
            sc.WARDEN_ENDPOINT: record.endpoint,
        },
    )
    base: dict[str, AttributeValue] = {sc.GEN_AI_OPERATION_NAME: operation, sc.GEN_AI_REQUEST_MODEL: model}
    if record.latency_ms is not None:
        inst.request_duration.record(record.latency_ms / 1000, {**base, sc.GEN_AI_REQUEST_STREAM: record.stream})
    if record.ttft_ms is not None:
        inst.time_to_first_token.record(record.ttft_ms / 1000, base)
    if record.prompt_tokens is not None:
        inst.token_usage.record(record.prompt_tokens, {**base, sc.GEN_AI_TOKEN_TYPE: sc.TOKEN_INPUT})
    if record.completion_tokens is not None:
        inst.token_usage.record(record.completion_tokens, {**base, sc.GEN_AI_TOKEN_TYPE: sc.TOKEN_OUTPUT})
    for step in record.steps:
        # Reasoning steps carrying the model's text are not checks; their check verdicts are.
        if step.stage in CHECK_STAGES and step.text is None:
            inst.check_duration.record(
                step.latency_ms / 1000,
                {sc.WARDEN_CHECK: step.name, sc.WARDEN_STAGE: step.stage.value, sc.WARDEN_VERDICT: step.verdict.value},
            )
