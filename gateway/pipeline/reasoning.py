"""Split a model's reasoning into steps, from reasoning deltas or ``<think>`` blocks.

A step is one non-empty line of reasoning (models write "Step 1: ...", numbered lists or
short paragraphs one per line). ``ThinkRouter`` picks the text inside ``<think>…</think>``
out of a content stream whose tags may be split across chunks; the content itself is not
changed (it still goes through the stream checks like any other content).
"""

from __future__ import annotations

from dataclasses import dataclass, field

OPEN, CLOSE = "<think>", "</think>"


@dataclass(slots=True)
class StepSplitter:
    _buf: str = ""

    def feed(self, text: str) -> list[str]:
        self._buf += text
        if "\n" not in text:
            return []
        *lines, self._buf = self._buf.split("\n")
        return [line.strip() for line in lines if line.strip()]

    def finish(self) -> list[str]:
        rest, self._buf = self._buf.strip(), ""
        return [rest] if rest else []


@dataclass(slots=True)
class ThinkRouter:
    """Feeds content; returns the part of it that lies inside think tags."""

    inside: bool = False
    seen: bool = False
    _tail: str = ""
    _parts: list[str] = field(default_factory=list)

    def feed(self, text: str) -> str:
        if not self.inside and not self.seen and not self._tail and "<" not in text:
            return ""
        buf, self._tail = self._tail + text, ""
        out: list[str] = []
        while buf:
            tag = CLOSE if self.inside else OPEN
            idx = buf.find(tag)
            if idx >= 0:
                if self.inside:
                    out.append(buf[:idx])
                self.inside = not self.inside
                self.seen = True
                buf = buf[idx + len(tag) :]
                continue
            keep = _partial_tag_suffix(buf, tag)
            if self.inside:
                out.append(buf[: len(buf) - keep])
            self._tail = buf[len(buf) - keep :] if keep else ""
            break
        return "".join(out)


def _partial_tag_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``tag``."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0
