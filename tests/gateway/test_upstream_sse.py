"""SSE parsing on the fast path (``gateway.upstream.sse``): batches, text-run merging, faults."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.errors import UpstreamError
from gateway.upstream.sse import FIRST_RUN, MAX_RUN, RUN_GROWTH, SseBatcher

ENVELOPE = {
    "id": "chatcmpl-9",
    "object": "chat.completion.chunk",
    "created": 5,
    "model": "m",
    "system_fingerprint": "fp",
}


def event(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    return b"data: " + orjson.dumps({**ENVELOPE, **extra, "choices": [choice]}) + b"\n\n"


def feed(batcher: SseBatcher, data: bytes) -> list[dict[str, Any]]:
    return list(batcher.feed(data))


def texts(batch: list[dict[str, Any]]) -> list[Any]:
    return [c["choices"][0]["delta"] if c.get("choices") else c.get("usage") for c in batch]


def test_a_read_of_text_tokens_becomes_one_chunk_with_the_same_envelope() -> None:
    words = ["Hel", "lo", ' "quoted"', " back\\slash", " ünïcödé ✓", " \n new line"]
    data = event({"role": "assistant", "content": ""}) + b"".join(event({"content": w}) for w in words)
    batcher = SseBatcher()
    batch = feed(batcher, data)
    # The stream's first run is short (FIRST_RUN tokens), so its first words go out early.
    assert texts(batch) == [
        {"role": "assistant", "content": ""},
        {"content": "".join(words[:FIRST_RUN])},
        {"content": "".join(words[FIRST_RUN:])},
    ]
    merged = batch[1]
    assert list(merged) == [*ENVELOPE, "choices"] and {k: merged[k] for k in ENVELOPE} == ENVELOPE
    assert list(merged["choices"][0]) == ["index", "delta", "logprobs", "finish_reason"]
    assert not batcher.done


def test_runs_grow_from_a_few_tokens_to_max_run() -> None:
    batcher = SseBatcher()
    count = 2 * MAX_RUN
    batch = feed(batcher, b"".join(event({"content": f"w{i} "}) for i in range(count)))
    sizes = [c["choices"][0]["delta"]["content"].count("w") for c in batch]
    growing = [FIRST_RUN]
    while growing[-1] * RUN_GROWTH < MAX_RUN:
        growing.append(growing[-1] * RUN_GROWTH)
    assert sizes[: len(growing) + 1] == [*growing, MAX_RUN]
    assert sum(sizes) == count and max(sizes) == MAX_RUN
    assert "".join(c["choices"][0]["delta"]["content"] for c in batch) == "".join(f"w{i} " for i in range(count))


def test_runs_continue_across_reads_and_everything_else_ends_them() -> None:
    batcher = SseBatcher()
    first = feed(batcher, event({"content": "a"}) + event({"content": "b"}))
    usage = b"data: " + orjson.dumps({**ENVELOPE, "choices": [], "usage": {"total_tokens": 3}}) + b"\n\n"
    second = feed(
        batcher,
        event({"content": "c"})
        + event({"content": "d"})
        + event({"reasoning_content": "hmm"})
        + event({"content": "e"})
        + event({}, finish="stop")
        + usage
        + b"data: [DONE]\n\n",
    )
    assert texts(first) == [{"content": "ab"}]
    assert texts(second) == [
        {"content": "cd"},
        {"reasoning_content": "hmm"},
        {"content": "e"},
        {},
        {"total_tokens": 3},
    ]
    assert second[3]["choices"][0]["finish_reason"] == "stop"
    assert batcher.done


def test_chunks_that_differ_in_more_than_text_are_not_merged() -> None:
    batcher = SseBatcher()
    batch = feed(
        batcher,
        event({"content": "x"})
        + event({"content": "y"}, created=6)  # another envelope
        + event({"content": "z", "tool_calls": []})  # more than text
        # starts and ends like the template, but what lies between is not one JSON string
        + event({"content": "PLACEHOLDER"}, created=6).replace(
            b'"PLACEHOLDER"', b'"w"},"logprobs":null,"finish_reason":null}],"extra":[{"a":{"c":""'
        ),
    )
    assert [c["choices"][0]["delta"] for c in batch] == [
        {"content": "x"},
        {"content": "y"},
        {"content": "z", "tool_calls": []},
        {"content": "w"},
    ]
    assert batch[3]["extra"] == [{"a": {"c": ""}, "logprobs": None, "finish_reason": None}]
    assert batcher.error is None


def test_events_split_across_reads_crlf_and_multi_line_data() -> None:
    data = event({"content": "one"}).replace(b"\n", b"\r\n") + event({"content": "two"})
    batcher = SseBatcher()
    out = []
    for i in range(0, len(data), 7):  # seven bytes a read, CRLFs split included
        out += feed(batcher, data[i : i + 7])
    assert "".join(c["choices"][0]["delta"]["content"] for c in out) == "onetwo"
    multi = b'data: {"id":"x","choices":\ndata: [{"index":0,"delta":{"content":"hi"}}]}\n\n'
    assert texts(SseBatcher().feed(b": keep-alive comment\n\n" + multi)) == [{"content": "hi"}]


def test_a_malformed_event_is_an_error_after_the_chunks_before_it() -> None:
    batcher = SseBatcher()
    batch = feed(batcher, event({"content": "good"}) + b"data: {not json\n\n" + event({"content": "lost"}))
    assert texts(batch) == [{"content": "good"}]
    assert isinstance(batcher.error, UpstreamError)
    error = SseBatcher()
    feed(error, b'data: {"error": {"message": "overloaded"}}\n\n')
    assert error.error is not None and "overloaded" in error.error.message


@pytest.mark.parametrize("escaped", [b"\\u00e9t\\u00e9", b"caf\\u00e9"])
def test_upstreams_that_escape_differently_still_merge(escaped: bytes) -> None:
    raw = event({"content": "PLACEHOLDER"}).replace(b"PLACEHOLDER", escaped)
    batch = SseBatcher().feed(raw + raw)
    decoded = orjson.loads(b'"' + escaped + b'"')
    assert texts(batch) == [{"content": decoded + decoded}]


def test_a_crlf_split_between_its_two_bytes_at_the_end_of_an_event() -> None:
    data = (event({"content": "one"}) + b"data: [DONE]\n\n").replace(b"\n", b"\r\n")
    cut = data.rindex(b"\r") + 1  # the read ends on the last "\r"
    batcher = SseBatcher()
    out = feed(batcher, data[:cut]) + feed(batcher, data[cut:])
    assert texts(out) == [{"content": "one"}] and batcher.done


@pytest.mark.parametrize(
    "raw_text",
    [b'say \\"hi\\" \\\\ done', b"\\ud83d\\ude00 \\/ \\t", b"tab\there", b"bad \\x escape", b'unescaped " quote'],
)
def test_a_token_matched_in_one_step_is_the_token_a_parse_gives(raw_text: bytes) -> None:
    # After the first tokens a template's events are matched and decoded in one step; a text
    # JSON refuses there (a raw tab, a bad escape, a stray quote) takes the full parse, which
    # refuses it the same way: a merge never accepts what a parse would not.
    words = [event({"content": f"w{i} "}) for i in range(8)]
    odd = event({"content": "PLACEHOLDER"}).replace(b"PLACEHOLDER", raw_text)
    data = b"".join(words) + odd + event({"content": "end"}) + b"data: [DONE]\n\n"
    batcher = SseBatcher()
    merged = "".join(c["choices"][0]["delta"].get("content", "") for c in feed(batcher, data))
    try:
        odd_text = orjson.loads(odd[6:-2])["choices"][0]["delta"]["content"]
    except orjson.JSONDecodeError:
        assert isinstance(batcher.error, UpstreamError) and merged == "".join(f"w{i} " for i in range(8))
    else:
        assert batcher.error is None and batcher.done
        assert merged == "".join(f"w{i} " for i in range(8)) + odd_text + "end"
