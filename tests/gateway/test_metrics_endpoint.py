"""``/metrics``: the OpenTelemetry instruments in Prometheus' format, each request counted once."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.gateway_harness import RunningGateway, running_gateway, write_config
from tests.upstream import SimulatorHandle

POLICY = """
name: plain
input:
  - {check: regex, patterns: ["forbidden-word"], action: block}
"""


@pytest.fixture(scope="module")
def gw(simulator: SimulatorHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    config = write_config(
        tmp_path_factory.mktemp("metrics"), simulator.base_url, policy_text=POLICY, extra="audit: {enabled: false}\n"
    )
    with running_gateway(config) as running:
        yield running


def scrape(gw: RunningGateway) -> dict[str, list[Sample]]:
    response = httpx.get(f"{gw.url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    out: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def test_requests_are_counted_once_with_their_labels(gw: RunningGateway, sim: SimulatorHandle) -> None:
    sim.script(match="capital", content="Paris.")
    gw.client().chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "capital?"}])
    with pytest.raises(Exception, match="policy"):
        gw.client().chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "forbidden-word"}]
        )
    got = scrape(gw)

    requests = {(s.labels["warden_verdict"], s.labels["warden_status"]): s.value for s in got["warden_requests_total"]}
    assert requests == {("pass", "ok"): 1.0, ("block", "blocked"): 1.0}
    [one] = [s for s in got["warden_requests_total"] if s.labels["warden_verdict"] == "pass"]
    assert one.labels["warden_endpoint"] == "/v1/chat/completions"
    assert one.labels["gen_ai_request_model"] == "gpt-4o-mini"
    assert one.labels["warden_tenant"] and one.labels["warden_policy_name"] == "plain"

    durations = got["gen_ai_server_request_duration_seconds_count"]
    assert sum(s.value for s in durations) == 2.0
    assert {s.labels["gen_ai_request_stream"] for s in durations} == {"false"}
    buckets = {s.labels["le"] for s in got["gen_ai_server_request_duration_seconds_bucket"]}
    assert {"0.005", "60.0", "+Inf"} <= buckets  # the request buckets, not the SDK's 0..10000 default

    checks = {
        (s.labels["warden_stage"], s.labels["warden_check"], s.labels["warden_verdict"])
        for s in got["warden_check_duration_seconds_count"]
    }
    assert ("input", "regex", "block") in checks
    tokens = {s.labels["gen_ai_token_type"] for s in got["gen_ai_client_token_usage_sum"]}
    assert tokens == {"input", "output"}
    assert "target_info" in got  # service name and SDK version, as the exporter spec asks


def test_each_gateway_counts_its_own(
    gw: RunningGateway, simulator: SimulatorHandle, tmp_path_factory: pytest.TempPathFactory
) -> None:
    before = sum(s.value for s in scrape(gw)["warden_requests_total"])
    config = write_config(
        tmp_path_factory.mktemp("other"), simulator.base_url, policy_text=POLICY, extra="audit: {enabled: false}\n"
    )
    with running_gateway(config) as other:
        other.client().chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        assert sum(s.value for s in scrape(other)["warden_requests_total"]) == 1.0
        # The first gateway still counts into its own instruments after the second configured telemetry.
        gw.client().chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert sum(s.value for s in scrape(gw)["warden_requests_total"]) == before + 1
