"""OpenTelemetry: spans from a record and metrics, read back through in-memory exporters."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import ConsoleSpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.semconv._incubating.metrics import gen_ai_metrics
from opentelemetry.trace import NonRecordingSpan, SpanContext

from audit import semconv as sc
from audit import telemetry
from audit.record import Stage, Status, Verdict
from tests.audit_db import make_record


@pytest.fixture
def otel() -> Iterator[tuple[InMemorySpanExporter, InMemoryMetricReader]]:
    spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
    handle = telemetry.configure("none", span_exporter=spans, metric_readers=[reader], set_global=False)
    yield spans, reader
    handle.shutdown()


def by_name(spans: tuple[ReadableSpan, ...], prefix: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name.startswith(prefix)]


def test_a_record_becomes_request_stage_and_check_spans(otel: tuple[InMemorySpanExporter, Any]) -> None:
    exporter, _ = otel
    record = make_record(1)
    record.trace_id = None
    trace_id = telemetry.emit_record_spans(record)
    spans = exporter.get_finished_spans()

    [root] = by_name(spans, "chat ")
    assert root.name == "chat gpt-4o-mini"
    assert root.attributes is not None
    assert root.attributes[sc.GEN_AI_OPERATION_NAME] == "chat"
    assert root.attributes[sc.GEN_AI_REQUEST_MODEL] == "gpt-4o-mini"
    assert root.attributes[sc.GEN_AI_RESPONSE_MODEL] == "gpt-4o-mini-2024"
    assert root.attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] == 12
    assert root.attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 34
    assert root.attributes[sc.WARDEN_VERDICT] == "flag"
    assert root.attributes[sc.WARDEN_POLICY_VERSION] == "sha256:abc123"
    assert record.trace_id == trace_id == format(root.context.trace_id, "032x")

    stages = by_name(spans, sc.SPAN_STAGE)
    assert [s.name.split()[-1] for s in sorted(stages, key=lambda s: s.start_time or 0)] == [
        "input", "upstream", "reasoning", "stream", "output",
    ]  # fmt: skip
    assert all(s.parent is not None and s.parent.span_id == root.context.span_id for s in stages)
    checks = by_name(spans, sc.SPAN_CHECK)
    assert len(checks) == 19  # every step but the upstream call
    pii = next(s for s in checks if s.name == "warden.check pii")
    assert pii.attributes is not None
    assert (pii.attributes[sc.WARDEN_STAGE], pii.attributes[sc.WARDEN_VERDICT]) == ("input", "redact")
    assert pii.attributes[sc.WARDEN_CHECK_SPANS] == 1
    input_stage = next(s for s in stages if s.name.endswith("input"))
    assert pii.parent is not None and pii.parent.span_id == input_stage.context.span_id
    assert all(s.context.trace_id == root.context.trace_id for s in spans)


def test_failed_requests_are_marked_as_errors_but_blocks_are_not(otel: tuple[InMemorySpanExporter, Any]) -> None:
    exporter, _ = otel
    blocked, failed = make_record(1), make_record(2)
    blocked.verdict, blocked.status = Verdict.block, Status.blocked
    failed.status, failed.error = Status.upstream_error, "upstream timed out"
    telemetry.emit_record_spans(blocked)
    telemetry.emit_record_spans(failed)
    roots = by_name(exporter.get_finished_spans(), "chat ")
    assert [r.status.status_code.name for r in roots] == ["UNSET", "ERROR"]
    assert roots[1].status.description == "upstream timed out"


def test_live_spans_through_the_tracer(otel: tuple[InMemorySpanExporter, Any]) -> None:
    exporter, _ = otel
    with telemetry.tracer().start_as_current_span("chat m", attributes={sc.WARDEN_STAGE: Stage.input.value}):
        pass
    [span] = exporter.get_finished_spans()
    assert span.attributes == {sc.WARDEN_STAGE: "input"}


def points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    assert data is not None
    out: dict[str, list[Any]] = {}
    for rm in data.resource_metrics:
        for scope in rm.scope_metrics:
            for metric in scope.metrics:
                out[metric.name] = list(metric.data.data_points)
    return out


def test_metrics_from_records(otel: tuple[Any, InMemoryMetricReader]) -> None:
    _, reader = otel
    first, second = make_record(1), make_record(2)
    second.verdict = Verdict.block
    telemetry.record_metrics(first)
    telemetry.record_metrics(second)
    got = points(reader)

    requests = {p.attributes[sc.WARDEN_VERDICT]: p.value for p in got[sc.METRIC_REQUESTS]}
    assert requests == {"flag": 1, "block": 1}
    tokens = {p.attributes[sc.GEN_AI_TOKEN_TYPE]: p.sum for p in got[sc.METRIC_TOKEN_USAGE]}
    assert tokens == {"input": 24, "output": 68}
    [ttft] = got[sc.METRIC_TIME_TO_FIRST_TOKEN]
    assert (ttft.count, ttft.sum) == (2, pytest.approx(0.2405))
    checks = {(p.attributes[sc.WARDEN_STAGE], p.attributes[sc.WARDEN_CHECK]) for p in got[sc.METRIC_CHECK_DURATION]}
    assert ("input", "pii") in checks
    assert not any(stage == "reasoning" for stage, _ in checks)  # the model's own steps are not checks
    assert ("upstream", "check_3") not in checks


def test_our_names_match_the_semantic_conventions() -> None:
    assert sc.GEN_AI_OPERATION_NAME == gen_ai.GEN_AI_OPERATION_NAME
    assert sc.GEN_AI_REQUEST_MODEL == gen_ai.GEN_AI_REQUEST_MODEL
    assert sc.GEN_AI_RESPONSE_MODEL == gen_ai.GEN_AI_RESPONSE_MODEL
    assert sc.GEN_AI_USAGE_INPUT_TOKENS == gen_ai.GEN_AI_USAGE_INPUT_TOKENS
    assert sc.GEN_AI_USAGE_OUTPUT_TOKENS == gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS
    assert sc.GEN_AI_TOKEN_TYPE == gen_ai.GEN_AI_TOKEN_TYPE
    assert sc.GEN_AI_RESPONSE_FINISH_REASONS == gen_ai.GEN_AI_RESPONSE_FINISH_REASONS
    assert sc.METRIC_TOKEN_USAGE == gen_ai_metrics.GEN_AI_CLIENT_TOKEN_USAGE
    assert sc.METRIC_TIME_TO_FIRST_TOKEN == gen_ai_metrics.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN
    assert sc.METRIC_REQUEST_DURATION == gen_ai_metrics.GEN_AI_SERVER_REQUEST_DURATION


def test_exporter_comes_from_the_standard_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    handle = telemetry.configure(set_global=False)
    assert isinstance(handle.span_exporter, ConsoleSpanExporter)
    assert isinstance(handle.metric_exporter, ConsoleMetricExporter)
    handle.shutdown()
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    handle = telemetry.configure(set_global=False)
    assert handle.metric_exporter is None
    handle.shutdown()
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    with pytest.raises(ValueError, match="zipkin"):
        telemetry.configure(set_global=False)


def test_otlp_exporter_is_built_from_otel_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    handle = telemetry.configure("otlp", metrics_exporter="none", set_global=False)
    assert isinstance(handle.span_exporter, HttpSpanExporter)
    handle.shutdown()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    handle = telemetry.configure("otlp", metrics_exporter="none", set_global=False)
    assert isinstance(handle.span_exporter, GrpcSpanExporter)
    handle.shutdown()


def test_without_an_exporter_records_get_trace_ids_but_no_spans_are_built() -> None:
    handle = telemetry.configure("none", set_global=False)
    try:
        assert not handle.spans_wanted
        first, second = make_record(1), make_record(2)
        first.trace_id = second.trace_id = None
        a, b = telemetry.emit_record_spans(first), telemetry.emit_record_spans(second)
        assert first.trace_id == a and second.trace_id == b
        assert len(a) == 32 and int(a, 16) != 0 and a != b
        # A request that came with a traceparent keeps its caller's trace id.
        parent = SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, is_remote=True)
        third = make_record(3)
        third.trace_id = None
        telemetry.emit_record_spans(third, trace.set_span_in_context(NonRecordingSpan(parent)))
        assert third.trace_id == "0af7651916cd43dd8448eb211c80319c"
    finally:
        handle.shutdown()
