"""A small reference hold-back driver for stream matchers, shared by the pattern and check tests.

``drive`` plays the gateway's stream scanner: it keeps the unsent text, calls the matcher
on every upstream chunk with a little already-sent context, replaces the complete spans,
and releases everything before ``hold_from``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from policies.checks.base import Span, StreamMatcher

CONTEXT_CHARS = 64


def redact(text: str, spans: Sequence[Span], offset: int = 0) -> str:
    out, cursor = [], 0
    for span in sorted(spans, key=lambda s: s.start):
        out.append(text[cursor : span.start - offset])
        out.append(f"<{span.entity_type}>")
        cursor = span.end - offset
    out.append(text[cursor:])
    return "".join(out)


@dataclass
class Feed:
    """What a client received: one released string per upstream chunk, plus the final flush."""

    released: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.released)


def drive(matcher: StreamMatcher, chunks: Sequence[str], context: int = CONTEXT_CHARS) -> Feed:
    feed = Feed()
    pending, sent_tail = "", ""
    for i in range(len(chunks) + 1):
        final = i == len(chunks)
        if not final:
            pending += chunks[i]
        buffer, start = sent_tail + pending, len(sent_tail)
        scan = matcher.scan(buffer, start, final)
        assert start <= scan.hold_from <= len(buffer)
        assert not final or scan.hold_from == len(buffer)
        previous_end = start
        for span in scan.spans:
            assert previous_end <= span.start < span.end <= scan.hold_from, (span, scan.hold_from)
            previous_end = span.end
        out = redact(buffer[start : scan.hold_from], scan.spans, offset=start)
        feed.released.append(out)
        pending = buffer[scan.hold_from :]
        feed.held.append(pending)
        sent_tail = (sent_tail + out)[-context:]
    return feed


def drive_many(matchers: Sequence[StreamMatcher], chunks: Sequence[str], context: int = 16) -> str:
    """Several matchers on one channel, as the gateway runs them: the earliest hold wins,
    a complete span that starts at or after it is put off (found again next time), and
    the context kept is raw text."""
    out, pending, ctx = [], "", ""
    for i in range(len(chunks) + 1):
        final = i == len(chunks)
        if not final:
            pending += chunks[i]
        buffer, start = ctx + pending, len(ctx)
        scans = [m.scan(buffer, start, final) for m in matchers]
        cut = len(buffer) if final else min(s.hold_from for s in scans)
        cursor = start
        for span in sorted((sp for s in scans for sp in s.spans), key=lambda sp: (sp.start, -sp.end)):
            if span.start >= cut or span.end <= cursor:
                continue
            out.append(buffer[cursor : max(cursor, span.start)] + f"<{span.entity_type}>")
            cursor = span.end
        if cursor < cut:
            out.append(buffer[cursor:cut])
            cursor = cut
        ctx, pending = buffer[max(0, cursor - context) : cursor], buffer[cursor:]
    return "".join(out)


def chunked(text: str, cuts: Sequence[int]) -> list[str]:
    points = sorted({c for c in cuts if 0 < c < len(text)})
    return [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]


def fragments(value: str, size: int = 3) -> set[str]:
    return {value[i : i + size] for i in range(len(value) - size + 1)}


def assert_never_leaks(feed: Feed, value: str, surrounding: str) -> None:
    """No 3+ character piece of ``value`` reached the client (unless the rest of the text has it)."""
    for piece in fragments(value) - {f for f in fragments(value) if f in surrounding}:
        assert piece not in feed.text, f"fragment {piece!r} of a redacted value was released"
