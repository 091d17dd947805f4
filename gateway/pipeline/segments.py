"""The texts of a request that input checks read, and how redactions are written back.

Every string a model will see counts: all messages of every role (tool results
included), content parts, assistant tool-call arguments, a completion prompt, embedding
inputs. They are joined into one text (so each check runs once per request) and spans
found in it are mapped back onto the strings they came from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from policies.checks.base import Span

SEPARATOR = "\n\n"


@dataclass(slots=True)
class Segment:
    text: str
    offset: int
    write: Callable[[str], None]


@dataclass(slots=True)
class Segments:
    items: list[Segment]
    text: str

    @staticmethod
    def of(strings: Iterable[tuple[str, Callable[[str], None]]]) -> Segments:
        items: list[Segment] = []
        offset = 0
        for text, write in strings:
            items.append(Segment(text, offset, write))
            offset += len(text) + len(SEPARATOR)
        return Segments(items, SEPARATOR.join(s.text for s in items))

    def redact(self, spans: Iterable[Span]) -> None:
        """Mask every span as ``<ENTITY>`` in the request body strings it falls in."""
        ordered = merge(spans)
        for seg in self.items:
            lo, hi = seg.offset, seg.offset + len(seg.text)
            local = [
                (max(s.start, lo) - lo, min(s.end, hi) - lo, s.entity_type)
                for s in ordered
                if s.start < hi and s.end > lo
            ]
            if local:
                seg.write(mask(seg.text, local))


def merge(spans: Iterable[Span]) -> list[Span]:
    """Sorted, non-overlapping spans; an overlap keeps the first span's entity type."""
    out: list[Span] = []
    for s in sorted(spans, key=lambda s: (s.start, -s.end)):
        if out and s.start < out[-1].end:
            last = out[-1]
            if s.end > last.end:
                out[-1] = Span(last.start, s.end, last.entity_type, max(last.score, s.score))
        else:
            out.append(s)
    return out


def mask(text: str, spans: Iterable[tuple[int, int, str]]) -> str:
    parts: list[str] = []
    cursor = 0
    for start, end, entity in spans:
        if start < cursor:
            start = cursor
        if end <= start:
            continue
        parts.append(text[cursor:start])
        parts.append(f"<{entity}>")
        cursor = end
    parts.append(text[cursor:])
    return "".join(parts)


def mask_spans(text: str, spans: Iterable[Span]) -> str:
    return mask(text, ((s.start, s.end, s.entity_type) for s in merge(spans)))


def _setter(container: Any, key: Any) -> Callable[[str], None]:
    def write(value: str) -> None:
        container[key] = value

    return write


def _content_strings(holder: dict[str, Any], key: str) -> Iterable[tuple[str, Callable[[str], None]]]:
    value = holder.get(key)
    if isinstance(value, str):
        yield value, _setter(holder, key)
    elif isinstance(value, list):
        for i, part in enumerate(value):
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                yield part["text"], _setter(part, "text")
            elif isinstance(part, str):
                yield part, _setter(value, i)


def chat_segments(body: dict[str, Any]) -> Segments:
    def strings() -> Iterable[tuple[str, Callable[[str], None]]]:
        for message in body.get("messages") or []:
            if not isinstance(message, dict):
                continue
            yield from _content_strings(message, "content")
            for call in message.get("tool_calls") or []:
                function = call.get("function") if isinstance(call, dict) else None
                if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                    yield function["arguments"], _setter(function, "arguments")

    return Segments.of(strings())


def prompt_segments(body: dict[str, Any], key: str) -> Segments:
    """``prompt`` of /v1/completions or ``input`` of /v1/embeddings: a string or list of strings."""

    def strings() -> Iterable[tuple[str, Callable[[str], None]]]:
        value = body.get(key)
        if isinstance(value, str):
            yield value, _setter(body, key)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, str):
                    yield item, _setter(value, i)

    return Segments.of(strings())
