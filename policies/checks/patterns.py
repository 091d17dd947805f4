"""Named patterns matched over a whole text or incrementally over a stream buffer.

This is the machinery the span-finding checks (pii, secrets, regex, deny_terms) share: a
check describes *what* to find as data (``PatternSpec``: a regex, an entity type, a score,
an optional validator such as a Luhn checksum, optional context words) and ``PatternSet``
finds it.

Streams rely on the ``regex`` package's partial matching: a match cut off by the end of
the buffer tells exactly where a value that is still being written begins, so only that
tail is held back. A complete match that touches the end of the buffer may still grow
(``user@example.co`` → ``.com``), so it is held too until more text or the end of the
stream arrives, and so is one a few characters short of the end whose pattern could
still take more. Spans inside the held tail are not reported until the tail is decided,
so a value is replaced whole, once.

Patterns should be self-delimiting and greedy (``[A-Za-z0-9]{20,}(?![A-Za-z0-9])``, not
a lazy ``.+?`` with nothing after it): the earliest complete match at a position is the
one reported, and a shorter alternative listed first can hide a longer one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import regex

from policies.checks.base import CheckResult, Span, StreamMatcher, StreamScan

#: Judges a matched value: the score to give it, or ``None`` to drop the match.
Validator = Callable[[str], float | None]

#: A pathological pattern raises ``TimeoutError`` (the policy's ``on_error`` applies)
#: instead of stalling the event loop.
REGEX_TIMEOUT_S = 1.0
#: how far short of the buffer's end a complete match is still checked for growth
_GROWTH_WINDOW = 8

_WORD = regex.compile(r"\w+")


@dataclass(frozen=True, slots=True)
class PatternSpec:
    """One named pattern; ``group`` picks the part of the match that becomes the span.

    ``end_groups`` lists groups whose ends are tried in turn as the span's end (the first
    that validates wins), for formats whose trailing part is optional (IBAN).
    ``context`` words within the few words before a match raise its score like
    presidio's context enhancer.
    """

    name: str
    entity_type: str
    regex: str
    score: float = 1.0
    flags: int = 0
    group: int | str = 0
    end_groups: tuple[int, ...] = ()
    validate: Validator | None = None
    context: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Hit:
    """A span and the rule that found it; ``origin`` is where the whole match began,
    which can be before the span (``password = "<span>"``)."""

    span: Span
    rule: str
    origin: int


@dataclass(frozen=True, slots=True)
class ContextRule:
    """Presidio's defaults: +0.35, at least 0.4, looking at the five words before."""

    boost: float = 0.35
    floor: float = 0.4
    words: int = 5
    chars: int = 80


class PatternSet:
    """Compiled patterns with a score threshold; immutable and shared across requests."""

    def __init__(
        self,
        specs: Iterable[PatternSpec],
        threshold: float = 0.0,
        context: ContextRule | None = None,
        timeout_from_chars: int = 4096,
    ) -> None:
        """``timeout_from_chars``: texts at least this long get ``REGEX_TIMEOUT_S``; use 0
        for patterns written by users, which may backtrack badly on short texts too."""
        self.specs = tuple(specs)
        self.threshold = threshold
        self._context = context or ContextRule()
        self._timeout_from_chars = timeout_from_chars
        self._compiled = [(spec, regex.compile(spec.regex, spec.flags)) for spec in self.specs]

    def find(self, text: str) -> list[Hit]:
        """Every match in a finished text, overlaps merged."""
        hits, _ = self._search(text, 0, 0, final=True)
        return merge(hits)

    def stream_scan(self, buffer: str, start: int, final: bool, lookback: bool = False) -> StreamScan:
        """Spans from ``start`` on; with ``lookback`` matches may begin in the context."""
        hits, hold = self._search(buffer, 0 if lookback else start, start, final)
        merged = merge(hits)
        # A span reaching into the held tail waits with it, so that it is replaced once;
        # and it waits from where its match began, so the next call can find it again.
        moved = True
        while moved:
            moved = False
            for hit in merged:
                if hit.span.end > hold > hit.origin:
                    hold, moved = hit.origin, True
        hold = max(hold, start)
        spans = tuple(hit.span for hit in merged if hit.span.end <= hold)
        return StreamScan(spans=spans, hold_from=hold)

    def _search(self, text: str, pos: int, report_from: int, final: bool) -> tuple[list[Hit], int]:
        size = len(text)
        hold = size
        hits: list[Hit] = []
        partial = not final
        # Stream buffers are small, and the clock reads a timeout costs would double
        # the work per pattern there; long texts (and users' own patterns) get the guard.
        timeout = REGEX_TIMEOUT_S if size - pos >= self._timeout_from_chars else None
        for spec, pattern in self._compiled:
            search = pattern.search
            at = pos
            while at <= size:
                # Positional arguments: regex parses keywords slowly, and this runs per chunk.
                m = search(text, at, None, None, partial, timeout)
                if m is None:
                    break
                if partial and (m.partial or self._may_grow(pattern, m, text, timeout)):
                    if m.start() < size:
                        hold = min(hold, m.start())
                    break
                if m.start(spec.group) >= report_from:  # context was judged before: skip it
                    hit = self._judge(spec, m, text)
                    if hit is not None:
                        hits.append(hit)
                at = m.end() if m.end() > m.start() else m.end() + 1
        return hits, hold

    @staticmethod
    def _may_grow(pattern: Any, m: Any, text: str, timeout: float | None) -> bool:
        """Whether more text could turn this complete match into a longer one.

        A match touching the end may grow. So may one a few characters short of it: in
        partial mode regex prefers a complete match to a longer partial one, so
        ``GB82 WEST 1234 5698 7654`` completes while the buffer ends in ``" "`` and an
        IBAN's optional last group is still coming; the same for ``me@example.co.``.
        The window keeps lazy patterns (a key block and its END line) from holding on.
        """
        gap = len(text) - m.end()
        if gap == 0:
            return True
        return gap <= _GROWTH_WINDOW and pattern.fullmatch(text, m.start(), None, None, True, timeout) is not None

    def _judge(self, spec: PatternSpec, m: Any, text: str) -> Hit | None:
        start, end = m.span(spec.group)
        if start < 0:
            return None
        ends = [e for e in (m.end(g) for g in spec.end_groups) if e > start] or [end]
        for candidate in dict.fromkeys(ends):
            if candidate <= start:
                continue
            score: float | None = spec.score
            if spec.validate is not None:
                score = spec.validate(text[start:candidate])
            if score is None or score <= 0.0:
                continue
            if spec.context and score < 1.0 and self._has_context(spec, text, start):
                score = min(1.0, max(score + self._context.boost, self._context.floor))
            if score < self.threshold:
                return None
            return Hit(Span(start, candidate, spec.entity_type, round(score, 4)), spec.name, m.start())
        return None

    def _has_context(self, spec: PatternSpec, text: str, start: int) -> bool:
        window = text[max(0, start - self._context.chars) : start]
        words = [w.lower() for w in _WORD.findall(window)[-self._context.words :]]
        return any(c in w for c in spec.context for w in words)


class PatternStreamMatcher(StreamMatcher):
    """A stream's matcher over a shared ``PatternSet``."""

    def __init__(self, patterns: PatternSet) -> None:
        self._patterns = patterns
        self._reported = False

    def scan(self, buffer: str, start: int, final: bool) -> StreamScan:
        # After reporting spans, the next call also matches from the start of the context:
        # the caller may have put a span off (another check held text before it) and sent
        # the text where its match began (a key name, a URL scheme). Only then, because
        # scanning the context costs as much again as the new text.
        scan = self._patterns.stream_scan(buffer, start, final, lookback=self._reported)
        self._reported = bool(scan.spans)
        return scan


def merge(hits: Iterable[Hit]) -> list[Hit]:
    """Union overlapping hits so a value is replaced whole; the strongest names it."""
    merged: list[Hit] = []
    for hit in sorted(hits, key=lambda h: (h.span.start, -h.span.end)):
        if merged and hit.span.start < merged[-1].span.end:
            last = merged[-1]
            best = last if (last.span.score, last.span.end) >= (hit.span.score, hit.span.end) else hit
            span = Span(
                last.span.start,
                max(last.span.end, hit.span.end),
                best.span.entity_type,
                max(last.span.score, hit.span.score),
            )
            merged[-1] = Hit(span, best.rule, min(last.origin, hit.origin))
        else:
            merged.append(hit)
    return merged


def to_result(hits: list[Hit], extra: Mapping[str, Any] | None = None) -> CheckResult:
    """A ``CheckResult`` naming the rules that fired (never the matched values)."""
    if not hits:
        return CheckResult(fired=False, detail=dict(extra or {}))
    entities: dict[str, int] = {}
    for hit in hits:
        entities[hit.span.entity_type] = entities.get(hit.span.entity_type, 0) + 1
    detail: dict[str, Any] = {"entities": entities, "rules": sorted({h.rule for h in hits})}
    detail.update(extra or {})
    return CheckResult(
        fired=True,
        score=max(h.span.score for h in hits),
        spans=tuple(h.span for h in hits),
        detail=detail,
    )


def check_regex(pattern: str, flags: int = 0) -> str:
    """Compile ``pattern`` to validate it at policy load; errors read well in a policy error."""
    try:
        regex.compile(pattern, flags)
    except regex.error as exc:
        raise ValueError(f"invalid regex {pattern!r}: {exc}") from None
    return pattern
