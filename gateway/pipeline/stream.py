"""Token-level scanning of one stream channel with a hold-back window.

The promise: no byte of a span that a stream check acts on is ever sent, and ordinary
text is not kept waiting. One ``ChannelScanner`` per channel of a stream (a choice's
content, its reasoning, one tool call's arguments) keeps:

* ``pending``: raw text not yet decided;
* ``ctx``: a little raw text already decided, so patterns see look-behind and a match
  that began before ``pending`` (one cut short by the cap) can be followed to its end;
* ``deferred``: complete spans a check reported inside text that another check still
  holds. They are kept (in raw stream offsets) and applied when that text is decided, so
  a span never depends on its check finding it again: its match may have begun in text
  that has left ``ctx`` since (``postgres://<long user>:PASSWORD@``).

On every feed each matcher reports complete spans and where a span still being written
may start (``hold_from``). Text before the earliest hold goes out at once, with complete
spans replaced by ``<ENTITY>``; the tail waits. A tail longer than ``holdback_chars`` is
decided on what is there: fail closed, it is redacted. Work per feed is bounded by
``ctx + pending + new text``, never by the length of the stream.

Only checks that can change what the client gets (enforce mode, action redact or block)
take part; flag-only and monitor checks run on the finished text instead.

With pseudonymization, a ``Restorer`` sits in front: the checks scan the *restored* text,
the text the client will get, so the hold-back promise holds for it too. Spans inside a
restored value (the client's own, from this request) are left alone unless the check sets
``check_restored``; the model's own new values are acted on as ever.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gateway.pipeline.pseudonyms import Restorer
from policies.checks.base import NO_CONTEXT, RequestContext, Span, StreamMatcher
from policies.compiled import BoundCheck
from policies.schema import Action

CONTEXT_CHARS = 64
#: how much raw text of a match cut short by the cap is kept to follow it to its end
MAX_CARRY = 4096


@dataclass(slots=True)
class StreamHit:
    bound: BoundCheck
    #: offsets in the channel's raw text (as the upstream sent it)
    span: Span
    value: str
    forced: bool = False


@dataclass(slots=True)
class Release:
    text: str
    blocked_by: StreamHit | None = None


_Found = tuple[Span, BoundCheck]


@dataclass(slots=True)
class ChannelScanner:
    checks: Sequence[BoundCheck]
    holdback: int
    context: RequestContext = NO_CONTEXT
    #: puts pseudonymized values back before the checks see the text (None: nothing to restore)
    restorer: Restorer | None = None
    #: whether a span's text lies in a restored value (see ``gateway.pipeline.checks.Exempt``)
    exempt: Callable[[str], bool] | None = None
    #: the request's tenant and key, for the checks' scoped exceptions (``exceptions:``)
    tenant: str = ""
    key_id: str = ""
    matchers: list[tuple[BoundCheck, StreamMatcher]] = field(default_factory=list)
    hits: list[StreamHit] = field(default_factory=list)
    scan_ms: float = 0.0
    blocked: bool = False
    _ctx: str = ""
    _pending: str = ""
    _base: int = 0  # raw offset of _ctx[0]
    _open_redaction: bool = False
    _carry: int | None = None  # where in _ctx a value cut short by the cap began
    #: complete spans put off behind another check's hold, in raw offsets, one per place and check
    _deferred: dict[tuple[int, int, int], _Found] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for bound in self.checks:
            matcher = bound.check.stream_matcher(self.context) if bound.changes_text else None
            if matcher is not None:
                self.matchers.append((bound, matcher))

    def _excepted(self, bound: BoundCheck, buf: str, span: Span) -> bool:
        """Whether one of the check's exceptions for this tenant and key lets ``span`` through."""
        return any(
            e.matches(self.tenant, self.key_id, None)
            and (not e.allow or e.allow.allows_span(buf, span.start, span.end))
            for e in bound.exceptions
        )

    @property
    def active(self) -> bool:
        return bool(self.matchers)

    @property
    def held(self) -> int:
        return len(self._pending)

    def feed(self, text: str, final: bool = False) -> Release:
        if self.blocked:
            return Release("")
        if self.restorer is not None:
            text = self.restorer.feed(text, final)
        if not self.matchers:
            return Release(text)
        started = time.perf_counter()
        try:
            return self._feed(text, final)
        finally:
            self.scan_ms += (time.perf_counter() - started) * 1000

    def _feed(self, text: str, final: bool) -> Release:
        buf = self._ctx + self._pending + text
        start = len(self._ctx)
        scan_from = start if self._carry is None else self._carry
        end = len(buf)
        found: list[_Found] = []
        hold, hold_by = end, None
        for bound, matcher in self.matchers:
            scan = matcher.scan(buf, scan_from, final)
            if scan.spans:
                found.extend((span, bound) for span in scan.spans if span.end > start)
            if scan.hold_from < hold:
                hold, hold_by = scan.hold_from, bound
        if self._deferred:
            found.extend(self._take_deferred())
        if found:
            found = [(s, b) for s, b in found if not (b.allow and b.allow.allows_span(buf, s.start, s.end))]
            found = [(s, b) for s, b in found if not (b.exceptions and self._excepted(b, buf, s))]
        if found and self.exempt is not None:
            found = [(s, b) for s, b in found if not self._exempt(b, buf[max(s.start, 0) : s.end])]
        if final:
            hold = end
        cut = max(hold, start)
        if hold < start and not self._open_redaction:
            hold = start  # a match reaching back into text that went out clean: just wait
        elif hold < start and hold_by is not None:
            # The tail continues a value already redacted: swallow it.
            found.append((Span(start, end, hold_by.check.default_entity), hold_by))
            cut = end
        elif end - cut > self.holdback and hold_by is not None:
            if self._exempt(hold_by, buf[cut:end]):
                cut = end  # a restored value longer than the window: the client's own, let it go
            else:
                found.append((Span(cut, end, hold_by.check.default_entity), hold_by))
                self._carry = cut
                cut = end
        if not found:
            return Release(self._advance(buf, start, cut, hold))
        out: list[str] = []
        cursor = start
        for span, bound in sorted(found, key=lambda f: (f[0].start, -f[0].end)):
            if span.start >= cut:
                self._defer(span, bound)  # complete, but after a held tail
                continue
            if span.end <= cursor:
                continue
            if bound.action is Action.block:
                out.append(buf[cursor : max(cursor, span.start)])
                self._record(bound, span, buf)
                self.blocked = True
                self._deferred.clear()
                return Release("".join(out), self.hits[-1])
            if span.start > cursor:
                out.append(buf[cursor : span.start])
                self._open_redaction = False
            if not (span.start <= cursor and self._open_redaction):
                out.append(f"<{bound.entity_of(span)}>")
            self._record(bound, span, buf)
            cursor = span.end
            self._open_redaction = True
        out.append(self._advance(buf, cursor, cut, hold))
        return Release("".join(out))

    def _exempt(self, bound: BoundCheck, value: str) -> bool:
        if self.exempt is None or bound.spec.check_restored or not self.exempt(value):
            return False
        if self.restorer is not None:
            self.restorer.table.exempted += 1
        return True

    def _advance(self, buf: str, cursor: int, cut: int, hold: int) -> str:
        """Send ``buf[cursor:cut]`` as it is and move the window past what has been decided."""
        sent = ""
        if cursor < cut:
            sent = buf[cursor:cut]
            self._open_redaction = False
            cursor = cut
        if not self._open_redaction:
            self._carry = None
        keep_from = max(cursor - MAX_CARRY, min(hold, cursor - CONTEXT_CHARS), 0)
        if self._carry is not None:
            keep_from = max(min(keep_from, self._carry), cursor - MAX_CARRY, 0)
            self._carry = max(self._carry - keep_from, 0)
        self._base += keep_from
        self._ctx = buf[keep_from:cursor]
        self._pending = buf[cursor:]
        return sent

    def _defer(self, span: Span, bound: BoundCheck) -> None:
        raw = Span(self._base + span.start, self._base + span.end, span.entity_type, span.score)
        self._deferred[(raw.start, raw.end, id(bound))] = (raw, bound)

    def _take_deferred(self) -> list[_Found]:
        # Deferred spans lie in pending, which is never dropped, so they map back exactly.
        base = self._base
        taken = [(Span(s.start - base, s.end - base, s.entity_type, s.score), b) for s, b in self._deferred.values()]
        self._deferred.clear()
        return taken

    def _record(self, bound: BoundCheck, span: Span, buf: str) -> None:
        lo = max(span.start, 0)
        value = buf[lo : span.end]
        self.hits.append(
            StreamHit(bound, Span(self._base + lo, self._base + span.end, bound.entity_of(span), span.score), value)
        )
