"""What span-finding engines and checks exchange: spans, and one step of stream matching.

A span is where a check acts inside a text; a ``StreamMatcher`` finds spans in a growing
stream buffer and says where a span still being written could begin (``StreamScan``), so
the stream stage holds back exactly that tail. ``policies.checks.base`` builds the check
interface on these; the pattern engines (``patterns``, ``prefilter``) produce them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Span:
    """A half-open character range ``[start, end)`` that a check acts on."""

    start: int
    end: int
    entity_type: str
    score: float = 1.0


@dataclass(frozen=True, slots=True)
class StreamScan:
    """One step of incremental matching over a buffer.

    ``spans``: complete matches that can no longer grow (absolute buffer offsets).
    ``hold_from``: the earliest offset where a match that is still being written may
    begin; text from there on must not be sent yet. ``len(buffer)`` when nothing waits.
    """

    spans: tuple[Span, ...]
    hold_from: int


class StreamMatcher(ABC):
    """Per-stream incremental matcher; one instance per stream, never shared."""

    @abstractmethod
    def scan(self, buffer: str, start: int, final: bool) -> StreamScan:
        """Find spans in ``buffer`` that begin at or after ``start``.

        ``buffer`` is the unsent text plus a little already-sent context before
        ``start`` (for look-behind and word boundaries). With ``final`` the stream has
        ended: report every match and hold nothing back.
        """
