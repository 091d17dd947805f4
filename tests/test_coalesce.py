"""Merging the plain text chunks of one upstream read (``gateway.pipeline.coalesce``)."""

from __future__ import annotations

import copy
from typing import Any

from gateway.pipeline.coalesce import coalesce

ENVELOPE = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 7, "model": "m"}


def chunk(delta: dict[str, Any], *, finish: str | None = None, index: int = 0, **extra: Any) -> dict[str, Any]:
    return {**ENVELOPE, **extra, "choices": [{"index": index, "delta": delta, "finish_reason": finish}]}


def text(c: dict[str, Any], field: str = "content") -> str:
    return str(c["choices"][0]["delta"][field])


def test_a_run_of_text_chunks_becomes_one_chunk() -> None:
    batch = [chunk({"role": "assistant", "content": ""})] + [chunk({"content": w}) for w in ("Hel", "lo", " there")]
    before = copy.deepcopy(batch)
    out = coalesce(batch)
    assert len(out) == 1
    assert out[0]["choices"][0]["delta"] == {"role": "assistant", "content": "Hello there"}
    assert {k: v for k, v in out[0].items() if k != "choices"} == ENVELOPE
    assert batch == before  # the upstream's chunks are not changed in place


def test_what_is_not_plain_text_ends_a_run_and_passes_unchanged() -> None:
    finish = chunk({}, finish="stop")
    tool = chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{"}}]})
    usage = {**ENVELOPE, "choices": [], "usage": {"prompt_tokens": 1}}
    batch = [chunk({"content": "a"}), chunk({"content": "b"}), tool, chunk({"content": "c"}), finish, usage]
    out = coalesce(batch)
    assert [text(c) for c in out[:1]] == ["ab"]
    assert out[1] is tool and out[3] is finish and out[4] is usage
    assert text(out[2]) == "c"


def test_channels_choices_and_envelopes_are_never_mixed() -> None:
    batch = [
        chunk({"reasoning_content": "think "}),
        chunk({"reasoning_content": "more"}),
        chunk({"content": "answer"}),
        chunk({"content": "other"}, index=1),
        chunk({"content": "x"}, model="other-model"),
        chunk({"content": "y"}, model="other-model"),
    ]
    out = coalesce(batch)
    assert [(c["choices"][0]["index"], next(iter(c["choices"][0]["delta"].items()))) for c in out] == [
        (0, ("reasoning_content", "think more")),
        (0, ("content", "answer")),
        (1, ("content", "other")),
        (0, ("content", "xy")),
    ]


def test_a_role_starts_a_new_message_and_logprobs_are_kept_per_token() -> None:
    with_logprobs = chunk({"content": "b"})
    with_logprobs["choices"][0]["logprobs"] = {"content": [{"token": "b", "logprob": -0.1}]}
    batch = [chunk({"content": "a"}), chunk({"role": "assistant", "content": "new"}), with_logprobs]
    out = coalesce(batch)
    assert len(out) == 3 and out[2] is with_logprobs


def test_completions_text_chunks_merge_too() -> None:
    def piece(t: str, finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "text": t, "logprobs": None, "finish_reason": finish}
        return {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "m", "choices": [choice]}

    out = coalesce([piece("one "), piece("two "), piece("three", "length")])
    assert [c["choices"][0]["text"] for c in out] == ["one two ", "three"]
    assert out[1]["choices"][0]["finish_reason"] == "length"


def test_small_batches_are_returned_as_they_are() -> None:
    single = [chunk({"content": "a"})]
    assert coalesce(single) is single
    assert coalesce([]) == []
