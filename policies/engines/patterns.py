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

A stream scan runs on every token, so most patterns must not run at all on most calls.
Each pattern's ``Shape`` (read from its parse tree, see ``regex_shape``) says how
every match begins, what it must contain, how short it can be and whether it can hold
white space; one pass of a prefix trie over the unsent text (``prefilter.Prefilter``) then finds
the few places where a match could begin, and a pattern is tried there alone. Patterns
that can begin with any word (an e-mail's local part, a random token) run only where a
complete match is possible, and otherwise only on the last word of the buffer, where
their partial match must lie. Where that is cheaper, a hold may begin a little early (a
prefix just begun at the very end, a plain last word held whole), never late: the next
call, with more text, decides. ``PatternSet(..., prefilter=False)`` runs every pattern
on every call; the tests hold the two to the same output.

Patterns should be self-delimiting and greedy (``[A-Za-z0-9]{20,}(?![A-Za-z0-9])``, not
a lazy ``.+?`` with nothing after it): the earliest complete match at a position is the
one reported, and a shorter alternative listed first can hide a longer one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import regex

from policies.engines.prefilter import Prefilter, UngatedShape
from policies.engines.regex_shape import Shape, shape_of
from policies.engines.spans import Span, StreamMatcher, StreamScan

#: Judges a matched value: the score to give it, or ``None`` to drop the match.
Validator = Callable[[str], float | None]

#: A pathological pattern raises ``TimeoutError`` (the policy's ``on_error`` applies)
#: instead of stalling the event loop.
REGEX_TIMEOUT_S = 1.0
#: how far short of the buffer's end a complete match is still checked for growth
_GROWTH_WINDOW = 8

_WORD = regex.compile(r"\w+")
#: every byte but ASCII white space: stripping them off leaves text up to the last word
_NOT_SPACE = bytes(c for c in range(256) if chr(c) not in " \t\n\r\f\v")
_PLAIN_WORDS = ("a", "I", "word", "Next", "x9", "2024", "Zq0vK")


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
        prefilter: bool = True,
    ) -> None:
        """``timeout_from_chars``: texts at least this long get ``REGEX_TIMEOUT_S``; use 0
        for patterns written by users, which may backtrack badly on short texts too.
        ``prefilter=False`` runs every pattern on every stream call (the reference the
        prefilter is tested against)."""
        self.specs = tuple(specs)
        self.threshold = threshold
        self._context = context or ContextRule()
        self._timeout_from_chars = timeout_from_chars
        self._compiled = [(spec, regex.compile(spec.regex, spec.flags)) for spec in self.specs]
        shapes = [shape_of(spec.regex, spec.flags) if prefilter else Shape() for spec in self.specs]
        self._plain_holders = frozenset(
            i for i, shape in enumerate(shapes) if shape.spaceless and self._partial_at_start(i, _PLAIN_WORDS)
        )
        self._prefilter = Prefilter(shapes, first=self._plain_holders)
        self._consumable = [shape.consumable for shape in shapes]

    def find(self, text: str) -> list[Hit]:
        """Every match in a finished text, overlaps merged.

        A finished text is a stream's last call over all of it: the prefilter runs each
        pattern only where a match can begin or complete, which finds the same matches as
        searching the whole text with every pattern (``prefilter=False``; tests hold the
        two to it) at a fraction of the cost on ordinary prose.
        """
        pre = self._prefilter
        size = len(text)
        timeout = REGEX_TIMEOUT_S if size >= self._timeout_from_chars else None
        data, base = pre.lookup(text, 0)
        found, _ = pre.candidates(data, base, 0, True)
        ungated = pre.ungated_index
        longest_word = -1
        hits: list[Hit] = []
        # Pattern by pattern in the set's order, as a search with each would: which of two
        # hits on one span names it (``merge``) must not depend on the prefilter.
        for index in range(len(self._compiled)):
            positions = found.get(index)
            if positions is not None:
                self._run_at(index, text, positions, 0, True, timeout, hits, size)
                continue
            shape = ungated.get(index)
            if shape is None:
                continue  # gated, and none of its prefixes occurs: no match can begin
            may_complete, longest_word = self._may_complete(shape, text, 0, data, base, longest_word)
            if may_complete:
                self._run(index, text, 0, 0, True, timeout, hits, size)
        return merge(hits)

    def stream_scan(self, buffer: str, start: int, final: bool, lookback: bool = False) -> StreamScan:
        """Spans from ``start`` on; with ``lookback`` matches may begin in the context."""
        return self.stream_step(buffer, start, final, lookback)[0]

    def stream_step(self, buffer: str, start: int, final: bool, lookback: bool) -> tuple[StreamScan, bool]:
        """``stream_scan``, and whether a span it reports began inside a longer match
        (``password = "<span>"``): finding that one again needs the context."""
        hits, hold = self._stream_search(buffer, 0 if lookback else start, start, final)
        if not hits:
            return self._prefilter.nothing(max(hold, start)), False
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
        reported = [hit for hit in merged if hit.span.end <= hold]
        inner = any(hit.origin < hit.span.start for hit in reported)
        return StreamScan(spans=tuple(hit.span for hit in reported), hold_from=hold), inner

    def _stream_search(self, buffer: str, pos: int, report_from: int, final: bool) -> tuple[list[Hit], int]:
        """Run only the patterns that can match, or partially match, from ``pos`` on."""
        pre = self._prefilter
        hits: list[Hit] = []
        size = len(buffer)
        # Stream buffers are small, and the clock reads a timeout costs would double
        # the work per pattern there; long texts (and users' own patterns) get the guard.
        timeout = REGEX_TIMEOUT_S if size - pos >= self._timeout_from_chars else None
        data, base = pre.lookup(buffer, pos)
        found, hold = pre.candidates(data, base, pos, final)
        for index, positions in found.items():
            hold = self._run_at(index, buffer, positions, report_from, final, timeout, hits, hold)
        tail_only: list[int] = []
        longest_word = -1  # of the unsent text: a match that holds no white space fits in one
        for shape in pre.ungated_shapes:
            index, spaceless = shape[0], shape[3]
            may_complete, longest_word = self._may_complete(shape, buffer, pos, data, base, longest_word)
            if may_complete or not (final or spaceless):
                hold = self._run(index, buffer, pos, report_from, final, timeout, hits, hold)
            elif not final:
                tail_only.append(index)
        if tail_only:
            hold = self._hold_last_word(tail_only, buffer, data, base, pos, report_from, timeout, hits, hold)
        return hits, hold

    @staticmethod
    def _may_complete(
        shape: UngatedShape, buffer: str, pos: int, data: bytes, base: int, longest: int
    ) -> tuple[bool, int]:
        """Whether an ungated pattern (``Prefilter.ungated_shapes``) can complete a match
        from ``pos`` on; and the longest word of the text from there (-1: not measured yet),
        which a pattern that holds no white space must fit in."""
        _, min_len, required, spaceless = shape
        if len(buffer) - pos < min_len:
            return False, longest
        if required is not None and not any(buffer.find(text, pos) >= 0 for text in required):
            return False, longest
        if spaceless:
            if longest < 0:
                longest = max(map(len, data[pos - base :].split()), default=0)
            return longest >= min_len, longest
        return True, longest

    def _hold_last_word(
        self,
        indexes: list[int],
        buffer: str,
        data: bytes,
        base: int,
        pos: int,
        report_from: int,
        timeout: float | None,
        hits: list[Hit],
        hold: int,
    ) -> int:
        """Holds for patterns that can only match partially, and never across white space.

        Their partial match lies in the buffer's last word, after its last character the
        pattern cannot hold; a plain word there is held whole by a pattern that holds
        plain words (tried on samples: a wrong answer only holds a word a token longer).
        Once the hold is at the word's start, no such pattern can move it earlier.
        """
        size = len(buffer)
        tail = max(base + len(data.rstrip(_NOT_SPACE)), pos)
        if tail >= min(hold, size):
            return hold
        if data[tail - base :].isalnum() and not self._plain_holders.isdisjoint(indexes):
            return tail  # the usual case: a plain last word, held whole
        for index in indexes:
            if tail >= hold:
                break
            alphabet = self._prefilter.alphabets[index]
            at = tail if alphabet is None else max(base + len(data.rstrip(alphabet)), tail)
            if at >= hold or at == size:
                continue
            if index in self._plain_holders and data[at - base :].isalnum():
                hold = at
                continue
            hold = self._run(index, buffer, at, report_from, False, timeout, hits, hold)
        return hold

    def _partial_at_start(self, index: int, words: Iterable[str]) -> bool:
        """Whether pattern ``index`` holds each of ``words``, whole, at the end of a buffer."""
        pattern = self._compiled[index][1]
        for word in words:
            m = pattern.search(" " + word, 1, None, None, True)
            if m is None or not m.partial or m.start() != 1:
                return False
        return True

    def _run(
        self,
        index: int,
        text: str,
        pos: int,
        report_from: int,
        final: bool,
        timeout: float | None,
        hits: list[Hit],
        hold: int,
    ) -> int:
        """Add one pattern's matches from ``pos`` on to ``hits``; return the new hold."""
        spec, pattern = self._compiled[index]
        search = pattern.search
        size = len(text)
        partial = not final
        at = pos
        while at <= size:
            # Positional arguments: regex parses keywords slowly, and this runs per chunk.
            m = search(text, at, None, None, partial, timeout)
            if m is None:
                break
            if partial and (m.partial or self._may_grow(pattern, m, text, timeout, self._consumable[index])):
                if m.start() < size:
                    hold = min(hold, m.start())
                break
            if m.start(spec.group) >= report_from:  # context was judged before: skip it
                hit = self._judge(spec, m, text)
                if hit is not None:
                    hits.append(hit)
            at = m.end() if m.end() > m.start() else m.end() + 1
        return hold

    def _run_at(
        self,
        index: int,
        text: str,
        positions: list[int],
        report_from: int,
        final: bool,
        timeout: float | None,
        hits: list[Hit],
        hold: int,
    ) -> int:
        """``_run`` where a match can only begin at ``positions`` (ascending): the same
        matches, from one anchored try at each instead of a search over the text."""
        spec, pattern = self._compiled[index]
        match = pattern.match
        size = len(text)
        partial = not final
        free = 0  # where the last match ended: matches do not overlap
        for at in positions:
            if at < free:
                continue
            m = match(text, at, None, None, partial, timeout)
            if m is None:
                continue
            if partial and (m.partial or self._may_grow(pattern, m, text, timeout, self._consumable[index])):
                if m.start() < size:
                    hold = min(hold, m.start())
                break
            if m.start(spec.group) >= report_from:
                hit = self._judge(spec, m, text)
                if hit is not None:
                    hits.append(hit)
            free = m.end() if m.end() > m.start() else m.end() + 1
        return hold

    @staticmethod
    def _may_grow(pattern: Any, m: Any, text: str, timeout: float | None, consumable: str | None) -> bool:
        """Whether more text could turn this complete match into a longer one.

        A match touching the end may grow. So may one a few characters short of it: in
        partial mode regex prefers a complete match to a longer partial one, so
        ``GB82 WEST 1234 5698 7654`` completes while the buffer ends in ``" "`` and an
        IBAN's optional last group is still coming; the same for ``me@example.co.``.
        The window keeps lazy patterns (a key block and its END line) from holding on.
        A longer match would consume what follows: a character the pattern never
        consumes settles it without the full match, which can backtrack at length.
        """
        gap = len(text) - m.end()
        if gap == 0:
            return True
        if gap > _GROWTH_WINDOW:
            return False
        rest = text[m.end() :]
        if consumable is not None and rest.isascii() and rest.strip(consumable):
            return False
        return pattern.fullmatch(text, m.start(), None, None, True, timeout) is not None

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
        # After reporting a span that began inside a longer match, the next call also
        # matches from the start of the context: a caller may have put the span off
        # (another check held text before it) and sent the text where its match began (a
        # key name, a URL scheme). Only then, because scanning the context costs as much
        # again as the new text. (The gateway's scanner keeps spans it put off, so it does
        # not depend on this; other callers may.)
        scan, self._reported = self._patterns.stream_step(buffer, start, final, self._reported)
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


def check_regex(pattern: str, flags: int = 0) -> str:
    """Compile ``pattern`` to validate it at policy load; errors read well in a policy error."""
    try:
        regex.compile(pattern, flags)
    except regex.error as exc:
        raise ValueError(f"invalid regex {pattern!r}: {exc}") from None
    return pattern
