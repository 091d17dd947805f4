"""The texts of a request that input checks read, and how redactions are written back.

Every string a model will see counts: all messages of every role (tool results
included), content parts, assistant tool-call arguments, a completion prompt, embedding
inputs. Each string is a :class:`Segment` that knows the message it came from and that
message's role; documents quoted inside a user turn (fenced blocks, ``<document>``-style
tags, triple quotes, block quotes) are told apart as the ``document`` role.

A check reads a :class:`View`: the strings of the roles it reads, joined by a blank line
(so each check runs once per request). Spans it finds are mapped back to offsets in the
whole request text (all segments joined), which is what the audit record and the
redaction write-back use.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from policies.checks.base import Span
from policies.roles import Role, quoted_documents, role_of

SEPARATOR = "\n\n"
#: one string of a request: its text, how to write a redacted version back, the role of its
#: message as the client wrote it, and the message's index (None outside ``messages``)
Entry = tuple[str, Callable[[str], None], str, int | None]


@dataclass(slots=True)
class Segment:
    text: str
    offset: int
    write: Callable[[str], None]
    role: Role = "user"
    #: index of the message in the request's ``messages`` (None for prompts and inputs)
    message: int | None = None
    #: ``[start, end)`` ranges of quoted documents inside a user turn's text
    documents: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Piece:
    """One string a check reads: where it sits in the view and in the whole request text."""

    text: str
    view_offset: int
    offset: int
    role: Role
    message: int | None


@dataclass(slots=True)
class View:
    """The strings of some roles, as one check reads them; maps its spans back."""

    pieces: list[Piece]
    text: str
    _starts: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._starts = [p.view_offset for p in self.pieces]

    @property
    def texts(self) -> list[str]:
        return [p.text for p in self.pieces]

    def piece_at(self, view_offset: int) -> Piece | None:
        i = bisect.bisect_right(self._starts, view_offset) - 1
        return self.pieces[i] if i >= 0 else None

    def to_request(self, spans: Iterable[Span]) -> tuple[Span, ...]:
        """Spans in view offsets -> spans in whole-request offsets (cut at a piece's end)."""
        out = []
        for s in spans:
            piece = self.piece_at(s.start)
            if piece is None:
                continue
            shift = piece.offset - piece.view_offset
            end = min(s.end, piece.view_offset + len(piece.text))
            if end > s.start:
                out.append(Span(s.start + shift, end + shift, s.entity_type, s.score))
        return tuple(out)


@dataclass(slots=True)
class Segments:
    items: list[Segment]
    text: str

    @staticmethod
    def of(strings: Iterable[Entry]) -> Segments:
        """Segments of ``(text, write-back, role as the client wrote it, message index)``."""
        items: list[Segment] = []
        offset = 0
        for text, write, role_name, message in strings:
            role = role_of(role_name)
            documents = quoted_documents(text) if role == "user" else ()
            items.append(Segment(text, offset, write, role, message, documents))
            offset += len(text) + len(SEPARATOR)
        return Segments(items, SEPARATOR.join(s.text for s in items))

    def view(self, roles: Collection[Role]) -> View:
        """What a check that reads ``roles`` sees.

        A user turn's quoted documents belong to the ``document`` role: a check that reads
        ``user`` but not ``document`` sees the turn with them blanked (spaces keep the
        offsets), one that reads ``document`` but not ``user`` sees only them.
        """
        pieces: list[Piece] = []
        cursor = 0

        def add(text: str, offset: int, role: Role, message: int | None) -> None:
            nonlocal cursor
            if pieces:
                cursor += len(SEPARATOR)
            pieces.append(Piece(text, cursor, offset, role, message))
            cursor += len(text)

        for seg in self.items:
            docs = seg.documents
            if seg.role != "user" or not docs:
                if seg.role in roles:
                    add(seg.text, seg.offset, seg.role, seg.message)
                continue
            if "user" in roles:
                text = seg.text if "document" in roles else _blank(seg.text, docs)
                add(text, seg.offset, "user", seg.message)
            elif "document" in roles:
                for start, end in docs:
                    add(seg.text[start:end], seg.offset + start, "document", seg.message)
        return View(pieces, SEPARATOR.join(p.text for p in pieces))

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


def _blank(text: str, ranges: Iterable[tuple[int, int]]) -> str:
    chars = list(text)
    for start, end in ranges:
        chars[start:end] = " " * (end - start)
    return "".join(chars)


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


def _content_strings(holder: dict[str, Any], key: str, role: str, index: int) -> Iterable[Entry]:
    value = holder.get(key)
    if isinstance(value, str):
        yield value, _setter(holder, key), role, index
    elif isinstance(value, list):
        for i, part in enumerate(value):
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                yield part["text"], _setter(part, "text"), role, index
            elif isinstance(part, str):
                yield part, _setter(value, i), role, index


def chat_segments(body: dict[str, Any]) -> Segments:
    def strings() -> Iterable[Entry]:
        for index, message in enumerate(body.get("messages") or []):
            if not isinstance(message, dict):
                continue
            role = str(message.get("role") or "user")
            yield from _content_strings(message, "content", role, index)
            for call in message.get("tool_calls") or []:
                function = call.get("function") if isinstance(call, dict) else None
                if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                    # Arguments the model wrote in an earlier turn.
                    yield function["arguments"], _setter(function, "arguments"), "assistant", index

    return Segments.of(strings())


def prompt_segments(body: dict[str, Any], key: str) -> Segments:
    """``prompt`` of /v1/completions or ``input`` of /v1/embeddings: a string or list of strings."""

    def strings() -> Iterable[Entry]:
        value = body.get(key)
        if isinstance(value, str):
            yield value, _setter(body, key), "user", None
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, str):
                    yield item, _setter(value, i), "user", None

    return Segments.of(strings())
