"""What a pattern's parse tree guarantees about every match, and the prefilter built on it.

``shape_of(pattern)`` reads a regex's parse tree once (per policy) and says how every match
begins (its possible first few characters), which literals it must contain, how short it can
be and whether it can hold white space. ``Prefilter`` turns the shapes of a ``PatternSet``'s
patterns into one trie pass over the unsent text of a stream, which finds the few places where
a match could begin; ``patterns.PatternSet`` then tries each pattern there alone.

Everything here errs one way only: a shape may promise less than the pattern keeps (a
pattern then runs where it cannot match), never more (it would be skipped where it can).
Anything the analysis does not understand gives no promise at all.
"""

from __future__ import annotations

import functools
import importlib
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import regex

from policies.checks.base import StreamScan

# The standard library's parser reads the syntax these patterns use; regex has no public
# parser. Private modules, so loaded by name and used through ``Any``.
_sre: Any = importlib.import_module("re._parser")
_op: Any = importlib.import_module("re._constants")

_PREFIX_LEN = 3
_MAX_PREFIXES = 4096
#: a character class wider than this ends a prefix: it says too little to be worth a lookup
_WIDE = 64
#: more prefixes made of lower-case letters alone than this, and prose hits them often
_WORDLIKE_PREFIXES = 32
#: more prefixes of letters alone than this come from classes, not from keywords
_LETTER_PREFIXES = 512
_MEMO_SIZE = 1 << 16
#: prefix lookups see every ASCII digit as "0" and every non-ASCII character as DEL
_DIGIT = "0"
_OTHER = "\x7f"
_TO_LOOKUP = bytes.maketrans(b"0123456789", _DIGIT.encode() * 10)
_NON_ASCII = regex.compile(r"[^\x00-\x7f]")
_SPACES = frozenset(" \t\n\r\f\v")
#: ASCII letters that IGNORECASE also matches outside ASCII (İ ı K ſ)
_FOLDS_OUTSIDE_ASCII = frozenset("iIkKsS")
#: regex flags with the same meaning in the standard parser (regex.ASCII is 128, re.ASCII 256)
_SHARED_FLAGS = int(regex.I | regex.M | regex.S | regex.X | regex.U)
# regex-only syntax the standard parser would accept with another meaning: fuzzy matching
# (`(?:abc){e<=1}`); POSIX classes and set operations only warn, which is caught below.
_FUZZY = regex.compile(r"(?<!\\)\{[^{}]*[A-Za-z][^{}]*\}")
_CATEGORIES: dict[Any, str] = {
    _op.CATEGORY_DIGIT: r"\d",
    _op.CATEGORY_NOT_DIGIT: r"\D",
    _op.CATEGORY_SPACE: r"\s",
    _op.CATEGORY_NOT_SPACE: r"\S",
    _op.CATEGORY_WORD: r"\w",
    _op.CATEGORY_NOT_WORD: r"\W",
}
_CHAR_OPS = frozenset({_op.LITERAL, _op.NOT_LITERAL, _op.ANY, _op.IN})
_ZERO_WIDTH = frozenset({_op.AT, _op.ASSERT, _op.ASSERT_NOT})
_REPEATS = frozenset({_op.MAX_REPEAT, _op.MIN_REPEAT, _op.POSSESSIVE_REPEAT})


class _Unknown(Exception):
    """A construct the analysis does not model."""


class _TooMany(Exception):
    """More prefixes than a lookup should hold: try shorter ones."""


@dataclass(frozen=True, slots=True)
class Shape:
    """What every match of one pattern satisfies; the defaults promise nothing.

    ``prefixes``: each match (partial ones included) begins with one of these, written
    with digits as ``0`` and non-ASCII characters as DEL; ``required``: each complete
    match contains one of these substrings; ``min_len``: no complete match is shorter;
    ``spaceless``: no match contains an ASCII space, tab or line break (looking ahead
    included).
    """

    prefixes: frozenset[str] | None = None
    required: tuple[str, ...] | None = None
    min_len: int = 0
    spaceless: bool = False
    #: characters (written as in ``prefixes``) that may come right before a match, from
    #: leading look-behinds, ``\b`` and ``^``; ``None``: any
    after: frozenset[str] | None = None
    #: whether a match may begin at the very start of the buffer
    at_start: bool = True
    #: the characters a partial match without the required text can hold; ``None``: any
    alphabet: frozenset[str] | None = None
    #: the ASCII characters a match can consume, as they are; ``None``: unknown
    consumable: str | None = None


@functools.lru_cache(maxsize=4096)
def shape_of(pattern: str, flags: int = 0) -> Shape:
    """The shape of ``pattern`` compiled by ``regex`` with ``flags`` (a pure function of
    both, so cached: every policy version builds its checks again)."""
    if flags & ~_SHARED_FLAGS or _FUZZY.search(pattern):
        return Shape()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # "possible nested set": regex would read it otherwise
            tree = _sre.parse(pattern, flags)
    except (re.error, FutureWarning, RecursionError, ValueError, TypeError, OverflowError):
        return Shape()
    items, flags = list(tree), tree.state.flags
    try:
        min_len = tree.getwidth()[0]
    except (OverflowError, KeyError, TypeError):
        min_len = 0
    prefixes = _prefixes(items, flags)
    after, at_start = _before(items, flags, prefixes)
    try:
        required, last = _required_at(items, flags)
    except (_Unknown, RecursionError):
        required, last = None, -1
    # Without its required text a match has not got past the node that holds it.
    alphabet = _alphabet(items[: last + 1] if required else items, flags)
    consumed = _alphabet(items, flags, raw=True)
    consumable = None if consumed is None else "".join(sorted(consumed))
    return Shape(prefixes, required, min_len, _spaceless(items, flags), after, at_start, alphabet, consumable)


def _regex_flags(flags: int) -> int:
    out = flags & int(regex.I | regex.S | regex.U)
    return out | int(regex.A) if flags & re.ASCII else out


@functools.cache
def _members(source: str, flags: int) -> frozenset[str]:
    """The ASCII characters one character class matches, as ``regex`` sees it."""
    compiled = regex.compile(source, flags)
    return frozenset(c for c in map(chr, range(128)) if compiled.fullmatch(c))


def _char_class(op: Any, av: Any, flags: int) -> tuple[frozenset[str], bool]:
    """ASCII members of a one-character node, and whether it may match outside ASCII."""
    if op is _op.ANY:
        source, other = ".", True
    elif op is _op.LITERAL:
        source, other = _esc(av), av > 127
    elif op is _op.NOT_LITERAL:
        source, other = f"[^{_esc(av)}]", True
    else:
        parts: list[str] = []
        other = False
        for item_op, item in av:
            if item_op is _op.NEGATE:
                parts.insert(0, "^")
                other = True
            elif item_op is _op.LITERAL:
                parts.append(_esc(item))
                other |= item > 127
            elif item_op is _op.RANGE:
                parts.append(f"{_esc(item[0])}-{_esc(item[1])}")
                other |= item[1] > 127
            elif item_op is _op.CATEGORY and item in _CATEGORIES:
                parts.append(_CATEGORIES[item])
                other = True
            else:
                raise _Unknown(item_op)
        source = "[" + "".join(parts) + "]"
    members = _members(source, _regex_flags(flags))
    if flags & re.IGNORECASE and members & _FOLDS_OUTSIDE_ASCII:
        other = True
    return members, other


def _esc(code: int) -> str:
    return f"\\U{code:08x}"


def _sub(av: Any) -> list[Any]:
    return list(av)


# Prefixes: sets of (text, exact). ``exact`` means the nodes so far matched exactly this
# text, so what follows extends it; otherwise anything may follow and the prefix stops.
_Prefix = tuple[str, bool]


def _prefixes(items: list[Any], flags: int) -> frozenset[str] | None:
    for length in range(_PREFIX_LEN, 0, -1):
        try:
            found = _seq_prefixes(items, length, flags)
        except _TooMany:
            continue
        except (_Unknown, RecursionError):
            return None
        texts = frozenset(text for text, _ in found)
        return None if "" in texts else texts
    return None


def _seq_prefixes(items: Sequence[Any], length: int, flags: int) -> set[_Prefix]:
    out: set[_Prefix] = {("", True)}
    for op, av in items:
        if not any(exact and len(text) < length for text, exact in out):
            break
        out = _concat(out, _node_prefixes(op, av, length, flags), length)
    return out


def _concat(left: set[_Prefix], right: set[_Prefix], length: int) -> set[_Prefix]:
    out: set[_Prefix] = set()
    for text, exact in left:
        if not exact or len(text) >= length:
            out.add((text, False))
            continue
        for more, more_exact in right:
            joined = text + more
            out.add((joined[:length], more_exact and len(joined) < length))
        if len(out) > _MAX_PREFIXES:
            raise _TooMany
    return out


def _node_prefixes(op: Any, av: Any, length: int, flags: int) -> set[_Prefix]:
    if op in _CHAR_OPS:
        members, other = _char_class(op, av, flags)
        chars = {_DIGIT if c.isdigit() else c for c in members} | ({_OTHER} if other else set())
        return {("", False)} if len(chars) > _WIDE else {(c, True) for c in chars}
    if op in _ZERO_WIDTH:
        return {("", True)}  # looking around consumes nothing: dropping it only widens
    if op is _op.SUBPATTERN:
        _group, add, remove, sub = av
        return _seq_prefixes(_sub(sub), length, (flags | add) & ~remove)
    if op is _op.ATOMIC_GROUP:
        return _seq_prefixes(_sub(av), length, flags)
    if op is _op.BRANCH:
        out: set[_Prefix] = set()
        for branch in av[1]:
            out |= _seq_prefixes(_sub(branch), length, flags)
        if len(out) > _MAX_PREFIXES:
            raise _TooMany
        return out
    if op in _REPEATS:
        low, high, sub = av
        once = _seq_prefixes(_sub(sub), length, flags)
        out = {("", True)}
        for _ in range(min(low, length)):
            out = _concat(out, once, length)
        if low > length:
            return {(text, False) for text, _ in out}
        if high > low:
            out |= {(text, False) for text, _ in _concat(out, once, length)}
        return out
    return {("", False)}  # back-references, conditionals: anything may come


def _exact_char(op: Any, av: Any, flags: int) -> str | None:
    """The one character a node always matches, if there is exactly one."""
    if op not in _CHAR_OPS:
        return None
    members, other = _char_class(op, av, flags)
    return next(iter(members)) if len(members) == 1 and not other else None


def _required_seq(items: list[Any], flags: int) -> tuple[str, ...] | None:
    return _required_at(items, flags)[0]


def _required_at(items: list[Any], flags: int) -> tuple[tuple[str, ...] | None, int]:
    """The best required texts of a sequence, and the index of the node that ends them."""
    candidates: list[tuple[tuple[str, ...], int]] = []
    run = ""
    for index, (op, av) in enumerate(items):
        char = _exact_char(op, av, flags)
        if char is not None:
            run += char
            continue
        if run:
            candidates.append(((run,), index - 1))
            run = ""
        found = _required_node(op, av, flags)
        if found:
            candidates.append((found, index))
    if run:
        candidates.append(((run,), len(items) - 1))
    if not candidates:
        return None, -1
    return max(candidates, key=lambda c: (min(map(len, c[0])), -len(c[0])))


def _alphabet(items: list[Any], flags: int, raw: bool = False) -> frozenset[str] | None:
    """Every character a match of ``items`` may consume or look ahead at, written as in
    prefixes; with ``raw``, the ASCII characters it may consume, as they are. ``None``:
    unknown."""
    try:
        out: set[str] = set()
        for op, av in items:
            _node_alphabet(op, av, flags, out, raw)
        return frozenset(out)
    except (_Unknown, RecursionError):
        return None


def _node_alphabet(op: Any, av: Any, flags: int, out: set[str], raw: bool) -> None:
    if op in _CHAR_OPS:
        members, other = _char_class(op, av, flags)
        out.update(members if raw else _lookup_set(members, other))
    elif op in (_op.ASSERT, _op.ASSERT_NOT):
        if av[0] > 0 and not raw:
            for o, a in av[1]:
                _node_alphabet(o, a, flags, out, raw)
    elif op is _op.SUBPATTERN:
        for o, a in av[3]:
            _node_alphabet(o, a, (flags | av[1]) & ~av[2], out, raw)
    elif op is _op.ATOMIC_GROUP:
        for o, a in av:
            _node_alphabet(o, a, flags, out, raw)
    elif op in _REPEATS:
        for o, a in av[2]:
            _node_alphabet(o, a, flags, out, raw)
    elif op is _op.BRANCH:
        for branch in av[1]:
            for o, a in branch:
                _node_alphabet(o, a, flags, out, raw)
    elif op is not _op.AT and op is not _op.GROUPREF:
        raise _Unknown(op)


def _required_node(op: Any, av: Any, flags: int) -> tuple[str, ...] | None:
    if op in _CHAR_OPS:
        members, other = _char_class(op, av, flags)
        return tuple(sorted(members)) if not other and 0 < len(members) <= 4 else None
    if op is _op.SUBPATTERN:
        return _required_seq(_sub(av[3]), (flags | av[1]) & ~av[2])
    if op is _op.ATOMIC_GROUP:
        return _required_seq(_sub(av), flags)
    if op in _REPEATS:
        return _required_seq(_sub(av[2]), flags) if av[0] >= 1 else None
    if op is _op.BRANCH:
        out: list[str] = []
        for branch in av[1]:
            found = _required_seq(_sub(branch), flags)
            if found is None:
                return None
            out.extend(found)
        unique = tuple(dict.fromkeys(out))
        return unique if len(unique) <= 8 else None
    return None


_LOOKUP_CHARS = frozenset(_DIGIT if c.isdigit() else c for c in map(chr, range(128)))
#: what may end a line for ``^`` (regex itself only takes \n without its WORD flag)
_LINE_BREAKS = frozenset("\n\r\v\f\x1c\x1d\x1e" + _OTHER)
_WORD_CHARS = frozenset(c for c in _LOOKUP_CHARS if c.isalnum() or c == "_")


def _before(items: list[Any], flags: int, prefixes: frozenset[str] | None) -> tuple[frozenset[str] | None, bool]:
    """What the leading zero-width nodes say about the character before a match."""
    allowed: frozenset[str] | None = None
    at_start = True
    try:
        for op, av in items:
            if op in (_op.ASSERT, _op.ASSERT_NOT) and av[0] < 0:
                only = list(av[1])
                if len(only) == 1 and only[0][0] in _CHAR_OPS:
                    members, other = _char_class(only[0][0], only[0][1], flags)
                    if op is _op.ASSERT:
                        at_start = False
                        allowed = _meet(allowed, _lookup_set(members, other))
                    else:
                        allowed = _meet(allowed, _outside(members))
            elif op is _op.AT and av is _op.AT_BEGINNING_STRING:
                allowed = frozenset()
            elif op is _op.AT and av is _op.AT_BEGINNING:
                allowed = _meet(allowed, _LINE_BREAKS if flags & re.MULTILINE else frozenset())
            elif op is _op.AT and av is _op.AT_BOUNDARY and prefixes and {p[0] for p in prefixes} <= _WORD_CHARS:
                allowed = _meet(allowed, (_LOOKUP_CHARS - _WORD_CHARS) | {_OTHER})
            elif op not in _ZERO_WIDTH:
                break  # the first character of the match: what is before it is settled
    except _Unknown:
        return None, True
    return allowed, at_start


def _meet(known: frozenset[str] | None, more: frozenset[str]) -> frozenset[str]:
    return more if known is None else known & more


def _lookup_set(members: frozenset[str], other: bool) -> frozenset[str]:
    return frozenset(_DIGIT if c.isdigit() else c for c in members) | ({_OTHER} if other else frozenset())


def _outside(members: frozenset[str]) -> frozenset[str]:
    """Lookup characters that stand for at least one character outside ``members``."""
    digits_all_in = all(d in members for d in "0123456789")
    out = {c for c in _LOOKUP_CHARS if c != _DIGIT and c not in members}
    if not digits_all_in:
        out.add(_DIGIT)
    out.add(_OTHER)  # some non-ASCII character is always left out
    return frozenset(out)


def _spaceless(items: list[Any], flags: int) -> bool:
    try:
        return all(_node_spaceless(op, av, flags) for op, av in items)
    except (_Unknown, RecursionError):
        return False


def _node_spaceless(op: Any, av: Any, flags: int) -> bool:
    if op in _CHAR_OPS:
        members, _other = _char_class(op, av, flags)
        return not members & _SPACES
    if op in (_op.ASSERT, _op.ASSERT_NOT):
        # A partial match can end inside a look-ahead (`key(?=\s+is)` waits on "key "),
        # so what a look-ahead reads counts; a look-behind reads text that is all there.
        direction, sub = av
        return direction < 0 or all(_node_spaceless(o, a, flags) for o, a in sub)
    if op is _op.AT or op is _op.GROUPREF:
        return True  # consumes nothing, or only what its group (checked there) matched
    if op is _op.SUBPATTERN:
        return all(_node_spaceless(o, a, (flags | av[1]) & ~av[2]) for o, a in av[3])
    if op is _op.ATOMIC_GROUP:
        return all(_node_spaceless(o, a, flags) for o, a in av)
    if op in _REPEATS:
        return all(_node_spaceless(o, a, flags) for o, a in av[2])
    if op is _op.BRANCH:
        return all(_node_spaceless(o, a, flags) for branch in av[1] for o, a in branch)
    return False


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
            region = _NON_ASCII.sub(_OTHER, region)
        return region.encode("ascii").translate(_TO_LOOKUP), base

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
    if sum(1 for p in prefixes if p.replace(_OTHER, "a").isalpha()) > _LETTER_PREFIXES:
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
