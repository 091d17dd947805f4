"""Where the spans that fired fall in the *stored* text, and that text as highlighted HTML.

Span offsets in the audit record are offsets in the text the check read. The stored text may
differ from it: with ``audit.store_text: redacted`` every redacted span was replaced by
``<ENTITY>``, which shifts everything after it. For a streamed answer there are two such
steps: stream checks read the raw upstream text and masked it into what was sent; output
checks read what was sent and masked it into what was stored. So each text comes with its
*layers*, oldest first: the spans masked on the way to the next layer and the spans to show.

``locate`` maps every span through the layers. Whether a layer was really masked in storage
(``redacted``) or kept (``full``) is not recorded, so each combination is tried, preferring
masked, and accepted only if every placeholder lands exactly on ``<ENTITY>`` in the stored
text. When nothing fits (an edited record, an unknown text shape), the placeholders found in
the text are highlighted alone and ``Located.exact`` is False, so the page can say so.
"""

from __future__ import annotations

import html
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

PLACEHOLDER = re.compile(r"<([A-Z][A-Z0-9_]*)>")

#: soft background colours, chosen per entity type so one type looks the same everywhere
PALETTE = ("#ffe08a", "#b8e0ff", "#ffc4c4", "#c8f0c0", "#e3ccff", "#ffd8b0", "#c0f0ec", "#f0c8e4")


@dataclass(frozen=True, slots=True)
class Mark:
    start: int
    end: int
    entity: str
    check: str = ""
    verdict: str = ""


@dataclass(frozen=True, slots=True)
class Layer:
    #: spans replaced by ``<ENTITY>`` on the way to the next layer (in this layer's offsets)
    masked: Sequence[Mark] = ()
    #: spans to show (in this layer's offsets); masked spans are shown too
    marks: Sequence[Mark] = ()


@dataclass(frozen=True, slots=True)
class Located:
    marks: tuple[Mark, ...]
    exact: bool
    notes: tuple[str, ...] = field(default=())


def merge(marks: Sequence[Mark]) -> list[Mark]:
    """Sorted, non-overlapping; an overlap keeps the first span's entity (as the gateway masks)."""
    out: list[Mark] = []
    for m in sorted(marks, key=lambda m: (m.start, -m.end)):
        if out and m.start < out[-1].end:
            last = out[-1]
            if m.end > last.end:
                out[-1] = Mark(last.start, m.end, last.entity, last.check, last.verdict)
        else:
            out.append(m)
    return out


@dataclass(frozen=True, slots=True)
class _Shift:
    """Maps offsets of one layer to the next, through its masked spans."""

    masked: tuple[Mark, ...]

    def _placeholder(self, m: Mark, shift: int) -> tuple[int, int]:
        start = m.start - shift
        return start, start + len(m.entity) + 2

    def point(self, pos: int, *, end: bool) -> int:
        shift = 0
        for m in self.masked:
            if pos <= m.start if end else pos < m.start:
                break
            if pos < m.end or (end and pos == m.end):
                lo, hi = self._placeholder(m, shift)
                return hi if end else lo
            shift += (m.end - m.start) - (len(m.entity) + 2)
        return pos - shift

    def span(self, m: Mark) -> Mark:
        start = self.point(m.start, end=False)
        return Mark(start, max(start, self.point(m.end, end=True)), m.entity, m.check, m.verdict)

    def placeholders(self) -> list[Mark]:
        out, shift = [], 0
        for m in self.masked:
            lo, hi = self._placeholder(m, shift)
            out.append(Mark(lo, hi, m.entity, m.check, m.verdict))
            shift += (m.end - m.start) - (len(m.entity) + 2)
        return out


_IDENTITY = _Shift(())


def _try(text: str, layers: Sequence[Layer], masked_flags: Sequence[bool]) -> list[Mark] | None:
    shifts = [
        _Shift(tuple(merge(layer.masked))) if flag else _IDENTITY
        for layer, flag in zip(layers, masked_flags, strict=True)
    ]
    out: list[Mark] = []
    for i, layer in enumerate(layers):
        for m in layer.marks:
            for shift in shifts[i:]:
                m = shift.span(m)
            out.append(m)
        # each placeholder written by this layer must sit on "<ENTITY>" in the stored text
        for ph in shifts[i].placeholders():
            for shift in shifts[i + 1 :]:
                ph = shift.span(ph)
            if text[ph.start : ph.end] != f"<{ph.entity}>":
                return None
    if any(m.start < 0 or m.end > len(text) for m in out):
        return None
    return out


def locate(text: str, layers: Sequence[Layer]) -> Located:
    """Every span of ``layers`` in ``text`` offsets (see the module docstring)."""
    if not layers:
        return Located(tuple(_found_placeholders(text)), exact=True)
    for flags in itertools.product((True, False), repeat=len(layers)):
        if any(flag and not layer.masked for layer, flag in zip(layers, flags, strict=True)):
            continue  # masking nothing is the same as not masking: try each shape once
        found = _try(text, layers, flags)
        if found is not None:
            return Located(tuple(_dedupe(found)), exact=True)
    return Located(
        tuple(_found_placeholders(text)),
        exact=False,
        notes=("span offsets do not fit the stored text; showing redaction placeholders only",),
    )


def _dedupe(marks: Sequence[Mark]) -> list[Mark]:
    seen: set[tuple[int, int, str]] = set()
    out = []
    for m in sorted(marks, key=lambda m: (m.start, -m.end, m.entity)):
        key = (m.start, m.end, m.entity)
        if key not in seen and m.end > m.start:
            seen.add(key)
            out.append(m)
    return out


def _found_placeholders(text: str) -> list[Mark]:
    return [Mark(m.start(), m.end(), m.group(1), "", "redact") for m in PLACEHOLDER.finditer(text)]


def color(entity: str) -> str:
    return PALETTE[sum(entity.encode()) % len(PALETTE)]


def to_html(text: str, marks: Sequence[Mark]) -> str:
    """``text`` escaped, with each mark wrapped in ``<mark>`` (nested spans are flattened)."""
    parts: list[str] = []
    cursor = 0
    for m in merge(list(marks)):
        if m.start < cursor:
            continue
        parts.append(html.escape(text[cursor : m.start]))
        label = html.escape(f"{m.entity} · {m.check} · {m.verdict}".strip(" ·"), quote=True)
        parts.append(
            f'<mark title="{label}" style="background:{color(m.entity)};padding:0 2px;border-radius:3px">'
            f"{html.escape(text[m.start : m.end])}<sub style='font-size:0.65em;opacity:0.75'> "
            f"{html.escape(m.entity)}</sub></mark>"
        )
        cursor = m.end
    parts.append(html.escape(text[cursor:]))
    body = "".join(parts)
    return f'<div style="white-space:pre-wrap;font-family:ui-monospace,monospace;font-size:0.9em">{body}</div>'
