"""The gateway in front of each real server's chunk bytes (``--shape`` of the simulator): the
client reads the same reply, stream checks still act across merged runs, and the chunks it gets
carry the upstream's fields (Ollama's role in every delta, llama.cpp's timings). How many
tokens merge depends on how the bytes arrive; ``test_upstream_sse_shapes`` covers that."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.simulator.shapes import SHAPES
from tests.gateway_harness import CLIENT_KEY, RunningGateway, running_gateway, write_config
from tests.upstream import SimulatorHandle

POLICY = """
name: shapes
stream:
  holdback_chars: 32
  checks:
    - {check: regex, patterns: ["ACME-\\\\d{4}"], entity: TICKET, action: redact}
"""
REPLY = 'Your ticket is ACME-1234 and <it> is open & "quoted" \\ back; café ✓. ' * 3


@pytest.fixture(scope="module")
def gw(simulator: SimulatorHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    folder: Path = tmp_path_factory.mktemp("shapes")
    config = write_config(folder, simulator.base_url, policy_text=POLICY, extra="audit: {enabled: false}\n")
    with running_gateway(config) as running:
        yield running


def raw_stream(gw: RunningGateway) -> list[dict[str, object]]:
    body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "which ticket?"}]}
    headers = {"authorization": f"Bearer {CLIENT_KEY}"}
    response = httpx.post(f"{gw.base_url}/chat/completions", json=body, headers=headers, timeout=30)
    assert response.status_code == 200
    events = [e[6:] for e in response.content.split(b"\n\n") if e.startswith(b"data: ")]
    assert events[-1] == b"[DONE]"
    return [json.loads(e) for e in events[:-1]]


def text_of(chunks: list[dict[str, object]]) -> str:
    out = ""
    for chunk in chunks:
        for choice in chunk.get("choices") or []:  # type: ignore[attr-defined]
            out += choice.get("delta", {}).get("content") or ""
    return out


@pytest.mark.parametrize("shape", SHAPES)
def test_each_shape_streams_through_the_gateway(gw: RunningGateway, sim: SimulatorHandle, shape: str) -> None:
    expected = REPLY.replace("ACME-1234", "<TICKET>")
    for chunking in ("word", "char"):
        sim.script(match="ticket", content=REPLY, chunking=chunking, shape=shape, times=1)
        chunks = raw_stream(gw)
        assert text_of(chunks) == expected
        content = [c for c in chunks if c.get("choices") and c["choices"][0].get("delta", {}).get("content")]  # type: ignore[index]
        if shape in ("ollama", "tgi"):
            assert all(c["choices"][0]["delta"].get("role") == "assistant" for c in content)  # type: ignore[index]
        if shape == "llamacpp":
            assert any("timings" in c for c in chunks)
