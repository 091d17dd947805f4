"""The stream prefilter: which of a pattern set's patterns can match where, in one trie pass.

``Prefilter`` turns the shapes (``policies.engines.regex_shape``) of a ``PatternSet``'s
patterns into one trie pass over the unsent text of a stream, which finds the few places where
a match could begin; ``patterns.PatternSet`` then tries each pattern there alone. It errs the
way the shapes do: a pattern may run where it cannot match, never be skipped where it can.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from policies.engines.regex_shape import NON_ASCII, OTHER, TO_LOOKUP, Shape
from policies.engines.spans import StreamScan

#: more prefixes made of lower-case letters alone than this, and prose hits them often
_WORDLIKE_PREFIXES = 32
#: more prefixes of letters alone than this come from classes, not from keywords
_LETTER_PREFIXES = 512
_MEMO_SIZE = 1 << 16


#: an ungated pattern's index, ``min_len``, ``required`` and ``spaceless``
UngatedShape = tuple[int, int, tuple[str, ...] | None, bool]


class Prefilter:
    """Which of a set's patterns can match in a buffer, from one pass of a prefix trie.

    ``gated`` patterns have a usable set of prefixes: they run only where one of them
    occurs in the unsent text (after a character their look-behind allows). Where the
    text only ends in the beginning of one, a partial match can only begin there: the
    caller holds from there without running the pattern, and the next call decides.
    ``ungated`` patterns (their prefix says little, or their required text says more)
    run only where their required text and length allow a complete match, and otherwise
    under the last-word rule of ``PatternSet._stream_search``.
    """

    def __init__(self, shapes: Sequence[Shape], first: frozenset[int] = frozenset()) -> None:
        """``first``: ungated patterns to try first (they settle the last word cheaply)."""
        self.shapes = tuple(shapes)
        masks: dict[str, int] = {}
        gated: list[int] = []
        ungated: list[int] = []
        for index, shape in enumerate(self.shapes):
            if shape.prefixes is None or _weak(shape):
                ungated.append(index)
                continue
            gated.append(index)
            for prefix in shape.prefixes:
                masks[prefix] = masks.get(prefix, 0) | 1 << index
        # Then patterns that any word may start: the last-word rule stops at the first
        # one that holds the whole word.
        ungated.sort(key=lambda i: (i not in first, self.shapes[i].prefixes is not None))
        self.gated, self.ungated = tuple(gated), tuple(ungated)
        self.ungated_shapes: tuple[UngatedShape, ...] = tuple(
            (i, self.shapes[i].min_len, self.shapes[i].required, self.shapes[i].spaceless) for i in ungated
        )
        self.ungated_index = {shape[0]: shape for shape in self.ungated_shapes}
        #: per ungated pattern, the bytes its partial match may hold (for `bytes.rstrip`)
        self.alphabets = {
            i: None if shape.alphabet is None else "".join(sorted(shape.alphabet)).encode("ascii")
            for i, shape in enumerate(self.shapes)
            if i in ungated
        }
        self.longest = max(map(len, masks), default=0)
        # For every trie node: the patterns one of whose prefixes it is or contains
        # (`_full`), and those with a prefix that goes on past it (`_partial`).
        self._full: dict[bytes, int] = {}
        self._partial: dict[bytes, int] = {}
        for prefix, bits in masks.items():
            for cut in range(1, len(prefix)):
                key = prefix[:cut].encode()
                self._partial[key] = self._partial.get(key, 0) | bits
        for node in sorted({p[:cut] for p in masks for cut in range(1, len(p) + 1)}, key=len):
            inherited = self._full.get(node[:-1].encode(), 0) if len(node) > 1 else 0
            self._full[node.encode()] = inherited | masks.get(node, 0)
        trie = _trie_source(masks)
        self._trie = re.compile(b"(?=(" + trie + b"))") if masks else None
        self._any = re.compile(trie) if masks else None  # the same, only faster to say "none"
        # Memos of pure functions, shared by every stream (bounded; a miss only costs time).
        self._ends: dict[bytes, int] = {}
        self._nothing: dict[int, StreamScan] = {}
        # `_after[c]`: the gated patterns a match of which may begin right after byte c
        self._after = [0] * 128
        self._at_start = 0
        for index in gated:
            shape = self.shapes[index]
            for code in range(128):
                if shape.after is None or chr(code) in shape.after:
                    self._after[code] |= 1 << index
            if shape.at_start:
                self._at_start |= 1 << index

    @staticmethod
    def lookup(buffer: str, pos: int) -> tuple[bytes, int]:
        """``buffer`` from one character before ``pos`` (what look-behinds see), as the
        prefixes are written, and the offset it starts at."""
        base = pos - 1 if pos else 0
        region = buffer[base:]
        if not region.isascii():
            region = NON_ASCII.sub(OTHER, region)
        return region.encode("ascii").translate(TO_LOOKUP), base

    def candidates(self, data: bytes, base: int, pos: int, final: bool) -> tuple[dict[int, list[int]], int]:
        """Where each gated pattern may match from ``pos`` on, and where to hold from.

        ``data`` is ``lookup(buffer, pos)``; positions are in ``buffer``. Only there can a
        match of the pattern begin, so it is tried there alone. Where the buffer ends in
        the beginning of a prefix, a partial match can only begin there: the hold says so
        without running anything, and the next call, with more text, decides.
        """
        found: dict[int, list[int]] = {}
        size = base + len(data)
        if self._trie is None or self._any is None:
            return found, size
        after, at_start, full = self._after, self._at_start, self._full
        if self._any.search(data, pos - base) is not None:
            for m in self._trie.finditer(data, pos - base):
                at = m.start()
                bits = full[m.group(1)] & (after[data[at - 1]] if at else at_start)
                while bits:
                    low = bits & -bits
                    bits ^= low
                    found.setdefault(low.bit_length() - 1, []).append(base + at)
        if final:
            return found, size
        end, first = len(data), max(len(data) - self.longest + 1, pos - base)
        if first > 0 and first == end - self.longest + 1:
            # The answer depends on the last `longest` bytes alone: remembered by them.
            window = data[first - 1 :]
            begun = self._ends.get(window)
            if begun is None:
                begun = self._begun(data, first, end, at_start)
                if len(self._ends) < _MEMO_SIZE:
                    self._ends[window] = begun
            return found, size if begun < 0 else base + first + begun
        begun = self._begun(data, first, end, at_start)
        return found, size if begun < 0 else base + first + begun

    def _begun(self, data: bytes, first: int, end: int, at_start: int) -> int:
        """Where, counted from ``first``, ``data`` ends in the beginning of a prefix; -1: nowhere."""
        for at in range(first, end):
            if self._partial.get(data[at:], 0) & (self._after[data[at - 1]] if at else at_start):
                return at - first
        return -1

    def nothing(self, hold: int) -> StreamScan:
        """The scan that reports no span and holds from ``hold`` (one object per value)."""
        scan = self._nothing.get(hold)
        if scan is None:
            scan = StreamScan((), hold)
            if len(self._nothing) < _MEMO_SIZE:
                self._nothing[hold] = scan
        return scan


def _weak(shape: Shape) -> bool:
    """Whether the prefixes say too little to be worth looking up.

    One character that a letter gives: every word has one. And for a pattern that holds
    no white space and needs a given text, many prefixes of lower-case letters alone (a
    hex run: `ead`, `bed`, ...): the required text rules out more, and the last word
    holds the rest.
    """
    prefixes = shape.prefixes or frozenset()
    if all(len(p) == 1 for p in prefixes) and any(p.isalpha() for p in prefixes):
        return True
    if sum(1 for p in prefixes if p.replace(OTHER, "a").isalpha()) > _LETTER_PREFIXES:
        return True  # letters from classes (`[a-z]{2}`), not from a word: any word has them
    wordlike = sum(1 for p in prefixes if p.isalpha() and p.islower())
    return shape.spaceless and shape.required is not None and wordlike > _WORDLIKE_PREFIXES


def _trie_source(words: Iterable[str]) -> bytes:
    """A regex matching, at a position, the longest of ``words`` that starts there.

    Characters whose subtrees are alike share one class (`[A-Za-z][A-Za-z]0` rather than
    2,704 branches): the same strings, tried by a table lookup instead of one by one.
    """
    root: dict[str, Any] = {}
    for word in words:
        node = root
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def alternatives(node: dict[str, Any]) -> list[bytes]:
        by_rest: dict[bytes, list[str]] = {}
        for char, child in sorted(node.items()):
            if char:
                by_rest.setdefault(emit(child), []).append(char)
        out = []
        for rest, chars in by_rest.items():
            escaped = b"".join(re.escape(c.encode()) for c in chars)
            out.append((escaped if len(chars) == 1 else b"[" + escaped + b"]") + rest)
        return out

    def emit(node: dict[str, Any]) -> bytes:
        options = alternatives(node)
        if "" in node:
            options.append(b"")
        if options == [b""]:
            return b""
        return b"(?:" + b"|".join(options) + b")"

    return b"|".join(alternatives(root))
