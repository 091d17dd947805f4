"""Text-run merging meets every real server's chunk bytes (``gateway.simulator.shapes``).

The property: whatever the server, the tokens and the way its bytes are cut into socket reads,
the batcher's chunks are the upstream's chunks with runs of text joined, and nothing else
changed: each output chunk, written the way the upstream writes JSON, is byte for byte the
first chunk of its run with the run's text, keys in the upstream's order.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.simulator.events import Envelope
from gateway.simulator.schema import Shape
from gateway.simulator.shapes import SHAPES, serialize, shaped_frames
from gateway.upstream.sse import SseBatcher

ENV = Envelope("chatcmpl-prop", "chat.completion.chunk", 1_700_000_000, "m")
USAGE = {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}
TEXT_FIELDS = ("content", "reasoning_content", "reasoning")

# Tokens with everything that JSON escapes differently from server to server.
tokens = st.lists(st.sampled_from([*list('ab é✓😀"\\/<>&\n\t\u2028\x01'), "été", " word"]), min_size=1, max_size=6).map(
    "".join
)
deltas = st.lists(
    st.one_of(
        tokens.map(lambda t: {"content": t}),
        tokens.map(lambda t: {"reasoning_content": t}),
    ),
    min_size=1,
    max_size=40,
)


def frames_for(shape: Shape, body: list[dict[str, Any]], *, tick_at: int | None, usage: bool) -> list[bytes]:
    per_choice = [([{"role": "assistant", "content": ""}, *body], "stop")]
    frames = shaped_frames(shape, ENV, per_choice, USAGE if usage else None, USAGE)
    if tick_at is not None:
        # Real servers stamp ``created`` per chunk: a second passes mid-stream.
        old, new = str(ENV.created).encode(), str(ENV.created + 1).encode()
        frames = frames[:tick_at] + [f.replace(old, new) for f in frames[tick_at:]]
    return frames


def text_key(chunk: dict[str, Any]) -> str | None:
    choices = chunk.get("choices") or []
    delta = choices[0].get("delta", {}) if choices else {}
    found = [k for k in TEXT_FIELDS if isinstance(delta.get(k), str) and delta[k]]
    return found[0] if found else None


def with_text(chunk: dict[str, Any], key: str, text: str) -> dict[str, Any]:
    choice = chunk["choices"][0]
    return {**chunk, "choices": [{**choice, "delta": {**choice["delta"], key: text}}]}


def blank(chunk: dict[str, Any]) -> bytes:
    """The chunk without its text (and OpenAI's per-chunk pad, which a merge may drop)."""
    key = text_key(chunk)
    blanked = with_text(chunk, key, "") if key else chunk
    return orjson.dumps({k: v for k, v in blanked.items() if k != "obfuscation"})


def padded(frames: list[bytes], pads: list[str]) -> list[bytes]:
    """OpenAI's ``"obfuscation"`` pad, a different random value on every chunk, added last."""
    out = []
    for i, frame in enumerate(frames):
        if frame.startswith(b"data: {") and b'"choices":[{' in frame:
            frame = frame[:-3] + b',"obfuscation":"' + pads[i % len(pads)].encode() + b'"}\n\n'
        out.append(frame)
    return out


def check_merged(shape: Shape, frames: list[bytes], out: list[dict[str, Any]]) -> None:
    sent = [orjson.loads(f[6:]) for f in frames if f != b"data: [DONE]\n\n"]
    at = 0
    for chunk in out:
        assert at < len(sent), "more chunks out than went in"
        first = sent[at]
        key = text_key(chunk)
        if key is None:
            assert serialize(shape, chunk) == serialize(shape, first)
            at += 1
            continue
        joined = first["choices"][0]["delta"].get(key) or ""
        end = at + 1
        # Every token is non-empty, so the run is the shortest one whose texts add up.
        while joined != chunk["choices"][0]["delta"][key]:
            assert end < len(sent), "merged text is not the upstream's text"
            assert blank(sent[end]) == blank(first), "chunks that differ in more than text were merged"
            joined += sent[end]["choices"][0]["delta"][key]
            end += 1
        expected = with_text(first, key, joined)
        assert orjson.dumps(chunk) == orjson.dumps(expected)  # same fields, same order
        assert serialize(shape, chunk) == serialize(shape, expected)  # the upstream's own bytes
        at = end
    assert at == len(sent), "chunks were lost"


@settings(max_examples=150, deadline=None)
@given(
    shape=st.sampled_from(SHAPES),
    body=deltas,
    cuts=st.lists(st.integers(min_value=1, max_value=4000), max_size=12),
    tick=st.one_of(st.none(), st.integers(min_value=1, max_value=40)),
    usage=st.booleans(),
    crlf=st.booleans(),
)
def test_merged_output_is_the_upstreams_chunks_with_text_joined(
    shape: Shape, body: list[dict[str, Any]], cuts: list[int], tick: int | None, usage: bool, crlf: bool
) -> None:
    frames = frames_for(shape, body, tick_at=tick, usage=usage)
    data = b"".join(frames)
    if crlf:
        data = data.replace(b"\n", b"\r\n")  # no text holds a raw newline: JSON escapes it
    batcher = SseBatcher()
    out: list[dict[str, Any]] = []
    start = 0
    for cut in [*sorted({c % len(data) for c in cuts}), len(data)]:
        out += batcher.feed(data[start:cut])
        start = max(start, cut)
    assert batcher.error is None and batcher.done
    check_merged(shape, frames, out)


@settings(max_examples=60, deadline=None)
@given(
    body=deltas,
    pads=st.lists(st.text(alphabet="abcXYZ019+/=_-", min_size=0, max_size=12), min_size=1, max_size=5),
    cut=st.integers(min_value=1, max_value=3000),
)
def test_openai_obfuscation_pads_do_not_stop_runs(body: list[dict[str, Any]], pads: list[str], cut: int) -> None:
    frames = padded(frames_for("openai", body, tick_at=None, usage=False), pads)
    data = b"".join(frames)
    batcher = SseBatcher()
    out = [*batcher.feed(data[: cut % len(data)]), *batcher.feed(data[cut % len(data) :])]
    assert batcher.done
    check_merged("openai", frames, out)
    if len(body) > 10 and all("content" in d for d in body):
        assert len(out) < len(body)  # runs formed despite a new pad on every chunk


@pytest.mark.parametrize("shape", SHAPES)
def test_every_shape_merges_a_fast_stream(shape: Shape) -> None:
    """A 200-token reply read at once leaves as a handful of chunks, whoever wrote it."""
    body = [{"content": f"w{i} "} for i in range(200)]
    frames = frames_for(shape, body, tick_at=None, usage=True)
    out = list(SseBatcher().feed(b"".join(frames)))
    assert len(out) <= 10, [c["choices"][0]["delta"] if c.get("choices") else c for c in out]
    check_merged(shape, frames, out)


def test_spaced_keys_and_reordered_keys_merge() -> None:
    """Bytes no shape here writes: keys in another order, a space before the colon, a tab."""
    head = b'data: {"choices" :[ {"delta":{"content" :\t"%s", "role":"assistant"},"index":0}],"id":"x"}\n\n'
    out = list(SseBatcher().feed(b"".join(head % w for w in (b"a", b"\\u00e9", b'\\"c\\\\'))))
    assert out == [{"choices": [{"delta": {"content": 'a\u00e9"c\\', "role": "assistant"}, "index": 0}], "id": "x"}]
    assert list(out[0]["choices"][0]["delta"]) == ["content", "role"]


def test_a_key_that_only_looks_like_the_text_does_not_merge() -> None:
    """``"content"`` as a key elsewhere, the delta's key escaped: the probe check finds out."""
    frame = b'data: {"x":{"content":"a"},"choices":[{"delta":{"cont\\u0065nt":"a"},"index":0}]}\n\n'
    other = frame.replace(b'"content":"a"', b'"content":"b"')
    out = list(SseBatcher().feed(frame + other))
    assert [c["x"]["content"] for c in out] == ["a", "b"]
    assert [c["choices"][0]["delta"]["content"] for c in out] == ["a", "a"]


def test_per_token_fields_never_merge() -> None:
    """Chunks carrying logprobs, usage or a second text are passed on one by one."""
    base = {"id": "x", "choices": [{"index": 0, "delta": {"content": "a"}, "finish_reason": None}]}
    logprobs = {**base, "choices": [{**base["choices"][0], "logprobs": {"content": []}}]}
    usage = {**base, "usage": {"total_tokens": 1}}
    two = {**base, "choices": [{**base["choices"][0], "delta": {"content": "a", "reasoning_content": "b"}}]}
    for chunk in (logprobs, usage, two):
        frame = b"data: " + orjson.dumps(chunk) + b"\n\n"
        assert list(SseBatcher().feed(frame * 3)) == [chunk] * 3
