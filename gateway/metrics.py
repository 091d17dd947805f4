"""``/metrics``: the OpenTelemetry instruments of ``audit.telemetry`` in Prometheus' text format.

There is one set of request metrics, the OpenTelemetry instruments (which also go to OTLP or the
console when configured); this module only adds a pull reader for them. Each gateway owns its
own reader and registry, so two gateways in one process (tests, the demo) never share counts.
"""

from __future__ import annotations

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from prometheus_client import CollectorRegistry, generate_latest

#: what Prometheus scrapers have always been given here (text exposition format 0.0.4)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class PrometheusEndpoint:
    """A metric reader for one gateway's MeterProvider, rendered on demand at ``/metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # Scope labels would repeat otel_scope_name="warden" on every series: every instrument is
        # Warden's. ``target_info`` (service name, SDK version) is kept, as the spec asks.
        self.reader = PrometheusMetricReader(scope_info_enabled=False, registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)
