"""The simulator writes stream chunks the way each real server does (``--shape``), and the
real openai SDK reads every shape to the same reply."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import httpx
import openai
import pytest

from gateway.simulator.shapes import SHAPES
from tests.upstream import REPO_ROOT, SimulatorHandle, running_simulator

REPLY = "Tags like <b> & café travel intact."


@pytest.fixture(scope="module")
def llamacpp() -> Iterator[SimulatorHandle]:
    with running_simulator(shape="llamacpp") as handle:
        yield handle


def raw_frames(sim: SimulatorHandle, *, usage: bool = False) -> list[bytes]:
    body: dict[str, object] = {"model": "sim-chat", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    if usage:
        body["stream_options"] = {"include_usage": True}
    response = httpx.post(f"{sim.base_url}/chat/completions", json=body, timeout=10)
    return [line[6:] for line in response.content.split(b"\n\n") if line.startswith(b"data: ")]


def test_the_server_shape_is_set_at_start(llamacpp: SimulatorHandle) -> None:
    llamacpp.clear()
    llamacpp.script(content=REPLY)
    frames = raw_frames(llamacpp)
    assert frames[-1] == b"[DONE]"
    chunks = [json.loads(f) for f in frames[:-1]]
    assert all(list(c) == sorted(c) for c in chunks)  # nlohmann::json sorts keys
    assert chunks[0]["choices"][0]["delta"] == {"content": None, "role": "assistant"}
    assert set(chunks[-1]) >= {"usage", "timings"} and chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == REPLY


@pytest.mark.parametrize("shape", SHAPES)
def test_every_shape_reads_back_to_the_same_reply_with_the_sdk(sim: SimulatorHandle, shape: str) -> None:
    sim.script(content=REPLY, shape=shape)
    with openai.OpenAI(base_url=sim.base_url, api_key="sk-sim", max_retries=0, timeout=10.0) as client:
        stream = client.chat.completions.create(
            model="sim-chat", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == REPLY
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


def test_shape_bytes(sim: SimulatorHandle) -> None:
    sim.script(content=REPLY, shape="ollama", times=1)
    ollama = raw_frames(sim)
    assert all(b'"delta":{"role":"assistant",' in f for f in ollama[:-1])
    joined = b"".join(ollama)
    assert b'"content":"\\u003cb\\u003e "' in joined and b'"content":"\\u0026 "' in joined  # Go's escapes
    assert b'"logprobs"' not in joined
    sim.script(content=REPLY, shape="spaced", times=1)
    spaced = raw_frames(sim, usage=True)
    assert spaced[1].startswith(b'{"id": "chatcmpl-') and b'"content": "' in spaced[1]
    assert b"caf\\u00e9" in b"".join(spaced) and b'"usage": {' in spaced[-2]
    sim.script(content=REPLY, shape="tgi", times=1)
    tgi = raw_frames(sim)
    assert tgi[0].startswith(b'{"object":"chat.completion.chunk","id":"",') and tgi[0].endswith(b',"usage":null}')
    sim.script(content=REPLY, shape="vllm", times=1)
    vllm = raw_frames(sim)
    assert b"system_fingerprint" not in vllm[0] and b'"stop_reason":null' in vllm[-2]


def test_an_unknown_shape_is_refused_by_the_cli_and_the_script_schema(sim: SimulatorHandle) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "simulator", "--shape", "gpt5"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and "unknown --shape 'gpt5'" in done.stderr + done.stdout
    assert "ollama" in done.stderr + done.stdout
    with pytest.raises(ValueError, match="shape"):
        sim.script(content="x", shape="gpt5")
