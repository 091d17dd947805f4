"""Upstream and check failures: clean errors for the client, nothing retried after a byte."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import httpx
import openai
import pytest

from policies import registry
from tests.faulty_checks import TEST_CHECKS
from tests.gateway_harness import CLIENT_KEY, RunningGateway, free_port, running_gateway, write_config
from tests.upstream import SimulatorHandle

POLICY = """
name: faults
input:
  - {check: test_raises, action: block}
  - {check: test_raises, name: lenient, action: block, on_error: allow}
  - {check: test_slow, action: block, timeout_ms: 100}
"""


@pytest.fixture(scope="module")
def gw(simulator: SimulatorHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    patch = pytest.MonkeyPatch()
    patch.setattr(registry, "BUILTIN_CHECKS", {**registry.BUILTIN_CHECKS, **TEST_CHECKS})
    registry.check_class.cache_clear()
    folder = tmp_path_factory.mktemp("faults")
    dead = f"http://127.0.0.1:{free_port()}/v1"
    config = write_config(
        folder,
        simulator.base_url,
        policy_text=POLICY,
        other_upstreams={"dead": dead},
        extra="upstream: {read_timeout_s: 1.0, timeout_s: 5, num_retries: 0}\naudit: {enabled: false}\n",
    )
    with running_gateway(config) as running:
        yield running
    patch.undo()
    registry.check_class.cache_clear()


def ask(gw: RunningGateway, content: str, model: str = "gpt-4o-mini", stream: bool = False, **kw: object) -> object:
    return gw.client(**kw).chat.completions.create(
        model=model, messages=[{"role": "user", "content": content}], stream=stream
    )


def test_upstream_refusing_connections_is_502(gw: RunningGateway) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        ask(gw, "hello", model="dead")
    assert info.value.status_code == 502
    assert info.value.response.headers["x-should-retry"] == "true"


def test_upstream_error_status_is_mapped(gw: RunningGateway, sim: SimulatorHandle) -> None:
    sim.script(match="fail", fault="refuse_500")
    with pytest.raises(openai.APIStatusError) as info:
        ask(gw, "please fail")
    assert info.value.status_code == 502
    sim.script(match="limit", fault="status_429")
    with pytest.raises(openai.RateLimitError):
        ask(gw, "rate limit me")


def test_upstream_hanging_is_504(gw: RunningGateway, sim: SimulatorHandle) -> None:
    sim.script(match="hang", fault="hang")
    with pytest.raises(openai.APIStatusError) as info:
        ask(gw, "please hang")
    assert info.value.status_code == 504
    with pytest.raises(openai.APIStatusError) as info:
        ask(gw, "please hang", stream=True)
    assert info.value.status_code == 504


@pytest.mark.parametrize("fault", ["die_mid_stream", "hang_mid_stream", "malformed_chunk"])
def test_upstream_failing_mid_stream_ends_with_error_event(
    gw: RunningGateway, sim: SimulatorHandle, fault: str
) -> None:
    sim.script(match="story", content="once upon a time there was a gateway " * 5, fault=fault)
    r = httpx.post(
        f"{gw.base_url}/chat/completions",
        headers={"authorization": f"Bearer {CLIENT_KEY}"},
        json={"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "tell a story"}]},
        timeout=20,
    )
    assert r.status_code == 200
    events = [line for line in r.text.split("\n\n") if line.startswith("data: ")]
    assert "once" in r.text
    assert '"error"' in events[-1] and "[DONE]" not in r.text
    with pytest.raises(openai.APIError):
        for _ in ask(gw, "tell a story", stream=True):  # type: ignore[attr-defined]
            pass


def test_client_disconnect_cancels_upstream(gw: RunningGateway, sim: SimulatorHandle) -> None:
    sim.script(match="long", content="word " * 400, delay_ms=10)
    for _ in range(3):
        with httpx.stream(
            "POST",
            f"{gw.base_url}/chat/completions",
            headers={"authorization": f"Bearer {CLIENT_KEY}"},
            json={"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "a long answer"}]},
        ) as r:
            for _ in r.iter_bytes():
                break
    stats = sim.wait_for_stats(lambda s: s.streams_cancelled >= 3)
    assert stats.in_flight == 0 or stats.streams_cancelled >= 3


def test_many_disconnects_do_not_leak_sessions(gw: RunningGateway, sim: SimulatorHandle) -> None:
    import asyncio

    from gateway.pipeline.session import GuardSession

    sim.script(match="long", content="word " * 400, delay_ms=5)

    async def one(client: httpx.AsyncClient) -> None:
        async with client.stream(
            "POST",
            "/chat/completions",
            json={
                "model": "gpt-4o-mini",
                "stream": True,
                "messages": [{"role": "user", "content": "a long one"}],
            },
        ) as r:
            async for _ in r.aiter_bytes():
                break

    async def many() -> None:
        async with httpx.AsyncClient(base_url=gw.base_url, headers={"authorization": f"Bearer {CLIENT_KEY}"}) as client:
            for _ in range(10):
                await asyncio.gather(*(one(client) for _ in range(10)))

    asyncio.run(many())
    sim.wait_for_stats(lambda s: s.in_flight == 0)
    gc.collect()
    alive = [o for o in gc.get_objects() if isinstance(o, GuardSession)]
    assert len(alive) < 5


def test_check_that_raises_fails_closed_with_503(gw: RunningGateway) -> None:
    r = httpx.post(
        f"{gw.base_url}/chat/completions",
        headers={"authorization": f"Bearer {CLIENT_KEY}"},
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "boom"}]},
    )
    assert r.status_code == 503
    assert r.headers["retry-after"] == "1"
    assert r.json()["error"]["code"] == "check_unavailable"


def test_check_that_times_out_fails_closed(gw: RunningGateway) -> None:
    r = httpx.post(
        f"{gw.base_url}/chat/completions",
        headers={"authorization": f"Bearer {CLIENT_KEY}"},
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "be slow"}]},
    )
    assert r.status_code == 503
    assert "test_slow" in r.json()["error"]["message"]
