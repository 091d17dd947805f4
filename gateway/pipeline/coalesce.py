"""Merge the plain text chunks of one batch into one chunk each run.

Under load an upstream's tokens arrive many to a socket read (``Upstream.stream`` yields
them as one batch). Checking, re-serializing and writing each token separately would make
the gateway's cost per token several times the upstream's; merging consecutive chunks that
carry nothing but text for the same choice and channel makes it a cost per read. The client
gets the same text, in the same order, at the same moment (it arrived together), in fewer
events: exactly what it would get from a faster network.

Only chunks that differ in nothing but their text are merged: same envelope (``id``,
``model``, ``created``, ``system_fingerprint``, ... all equal), one choice, no
``finish_reason``, no ``logprobs``, no ``usage``, no tool calls, and a delta holding one text
field (plus ``role`` on the first chunk of a run). Anything else passes through untouched
and ends the run.
"""

from __future__ import annotations

from typing import Any

Chunk = dict[str, Any]
_TEXT_FIELDS = frozenset(("content", "reasoning_content", "reasoning"))
_CHOICE_KEYS = frozenset(("index", "delta", "finish_reason", "logprobs"))
_COMPLETION_KEYS = frozenset(("index", "text", "finish_reason", "logprobs"))


def _text_slot(chunk: Chunk) -> tuple[Any, str, bool] | None:
    """(choice index, text field, carries a role) when ``chunk`` is plain text, else None."""
    choices = chunk.get("choices")
    if type(choices) is not list or len(choices) != 1 or chunk.get("usage"):
        return None
    choice = choices[0]
    if type(choice) is not dict or choice.get("finish_reason") is not None or choice.get("logprobs") is not None:
        return None
    delta = choice.get("delta")
    if delta is None:
        if not choice.keys() <= _COMPLETION_KEYS or type(choice.get("text")) is not str:
            return None
        return choice.get("index"), "text", False
    if type(delta) is not dict or not choice.keys() <= _CHOICE_KEYS:
        return None
    field, role = None, False
    for key, value in delta.items():
        if key == "role":
            role = True
        elif key in _TEXT_FIELDS and type(value) is str and field is None:
            field = key
        else:
            return None
    return None if field is None else (choice.get("index"), field, role)


def _same_envelope(a: Chunk, b: Chunk) -> bool:
    return len(a) == len(b) and all(key == "choices" or (key in a and a[key] == value) for key, value in b.items())


def _text_of(chunk: Chunk, field: str) -> str:
    choice = chunk["choices"][0]
    holder = choice if field == "text" and "delta" not in choice else choice["delta"]
    text: str = holder[field]
    return text


def _with_text(chunk: Chunk, field: str, text: str) -> Chunk:
    choice = dict(chunk["choices"][0])
    if field == "text" and "delta" not in choice:
        choice["text"] = text
    else:
        choice["delta"] = {**choice["delta"], field: text}
    return {**chunk, "choices": [choice]}


def coalesce(batch: list[Chunk]) -> list[Chunk]:
    """``batch`` with each run of mergeable chunks replaced by one chunk; order kept."""
    if len(batch) < 2:
        return batch
    out: list[Chunk] = []
    head: Chunk | None = None  # first chunk of the run being merged
    slot: tuple[Any, str] = (None, "")
    parts: list[str] = []
    for chunk in batch:
        found = _text_slot(chunk)
        if (
            found is not None
            and head is not None
            and not found[2]
            and found[:2] == slot
            and _same_envelope(head, chunk)
        ):
            parts.append(_text_of(chunk, slot[1]))
            continue
        if head is not None:
            out.append(head if len(parts) == 1 else _with_text(head, slot[1], "".join(parts)))
        if found is None:
            head = None
            out.append(chunk)
        else:
            head, slot = chunk, found[:2]
            parts = [_text_of(chunk, slot[1])]
    if head is not None:
        out.append(head if len(parts) == 1 else _with_text(head, slot[1], "".join(parts)))
    return out
