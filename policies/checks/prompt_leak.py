"""``prompt_leak``: an answer that gives away the system prompt or a secret written in it.

An extraction that fooled the input stage (a new jailbreak, a paraphrase, a language the
classifier has little of) still has to get the text out through the answer. This check
knows the request's system and developer messages (``RequestContext``) and, token by token
inside the stream's hold-back window, acts on:

* a **secret** the system prompt holds: a quoted short value (``'tulip-42'``), the value after
  "password / key / token / code / PIN ... is", or a canary-like token (letters and digits,
  8+ characters). It is found whatever the case and with separators between its characters
  ("T-U-L-I-P 4 2"), forwards or backwards;
* a **verbatim copy** of the system prompt: ``min_overlap_chars`` or more characters in a row
  (case and runs of whitespace aside) that also occur in it.

Misses: leaks that are paraphrased, translated, summarised or encoded (base64, pig latin,
one word per line with filler between the characters); a secret the system prompt does not
mark as one (an unquoted ordinary word); up to ``HOLD_FROM_CHARS - 1`` characters at the
start of a verbatim copy, which look like any text until the copy is long enough to hold.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

import regex
from pydantic import Field

from policies.checks.base import (
    NO_CONTEXT,
    Check,
    CheckOptions,
    CheckResult,
    RequestContext,
    Span,
    StreamMatcher,
    StreamScan,
    to_result,
)
from policies.engines.patterns import PatternSet, PatternSpec, PatternStreamMatcher

SECRET_ENTITY = "PROMPT_SECRET"  # noqa: S105 - an entity type, not a password
COPY = "SYSTEM_PROMPT"
#: a stream holds back a tail once it repeats this many characters of the system prompt
HOLD_FROM_CHARS = 12

_QUOTED = re.compile(r"""'([^'\n]{3,64})'|"([^"\n]{3,64})"|`([^`\n]{3,64})`|[«“‘]([^»”’\n]{3,64})[»”’]""")
_AFTER_KEYWORD = re.compile(
    r"\b(?:password|passcode|passphrase|pass phrase|secret(?: key| code| word)?|api[ _-]?key|access key|token|pin|"
    r"code|canary|key|codeword|code word)\b(?: \w+){0,2}? ?(?:is|was|=|:|reads)\s*[\"'`“‘]?([^\s\"'`”’,;]{4,64})",
    re.IGNORECASE,
)
_CANARY = re.compile(r"(?<![\w-])(?=[\w-]*\d)(?=[\w-]*[A-Za-z])[\w-]{8,64}(?![\w-])")


class PromptLeakOptions(CheckOptions):
    #: a copy of at least this many characters of the system prompt is a leak
    min_overlap_chars: int = Field(default=40, ge=HOLD_FROM_CHARS, le=10_000)
    #: also act on secret-looking values the system prompt holds
    secrets: bool = True


def prompt_secrets(system: str) -> list[str]:
    """The values in ``system`` that look like secrets, longest first."""
    found: set[str] = set()
    for m in _QUOTED.finditer(system):
        value = next(g for g in m.groups() if g is not None).strip()
        if len(value.split()) <= 2 and sum(ch.isalnum() for ch in value) >= 3:
            found.add(value)
    for m in _AFTER_KEYWORD.finditer(system):
        value = m.group(1).rstrip(".")
        if sum(ch.isalnum() for ch in value) >= 4:
            found.add(value)
    found.update(m.group(0) for m in _CANARY.finditer(system))
    return sorted(found, key=lambda v: (-len(v), v))


def _spread(chars: str) -> str:
    """A pattern for ``chars`` with up to three separators between any two of them."""
    return r"[\W_]{0,3}".join(regex.escape(c) for c in chars)


def _secret_specs(secrets: list[str]) -> list[PatternSpec]:
    specs = []
    for i, value in enumerate(secrets):
        core = [c.lower() for c in value if c.isalnum()]
        for direction, chars in (("", core), ("_reversed", core[::-1])):
            pattern = r"(?<![^\W_])" + _spread("".join(chars)) + r"(?![^\W_])"
            specs.append(PatternSpec(f"secret_{i}{direction}", SECRET_ENTITY, pattern, flags=regex.IGNORECASE))
    return specs


class _Automaton:
    """Suffix automaton of a text: for each position of another text, the longest run ending
    there that also occurs in it, in linear time."""

    def __init__(self, text: str) -> None:
        self.next: list[dict[str, int]] = [{}]
        self.link = [-1]
        self.length = [0]
        last = 0
        for ch in text:
            cur = len(self.length)
            self.next.append({})
            self.length.append(self.length[last] + 1)
            self.link.append(0)
            p = last
            while p != -1 and ch not in self.next[p]:
                self.next[p][ch] = cur
                p = self.link[p]
            if p != -1:
                q = self.next[p][ch]
                if self.length[p] + 1 == self.length[q]:
                    self.link[cur] = q
                else:
                    clone = len(self.length)
                    self.next.append(dict(self.next[q]))
                    self.length.append(self.length[p] + 1)
                    self.link.append(self.link[q])
                    while p != -1 and self.next[p].get(ch) == q:
                        self.next[p][ch] = clone
                        p = self.link[p]
                    self.link[q] = self.link[cur] = clone
            last = cur

    def runs(self, text: str) -> list[int]:
        """``out[i]``: length of the longest substring ending at ``text[i]`` found in the automaton's text."""
        out = []
        state, length = 0, 0
        for ch in text:
            while state and ch not in self.next[state]:
                state = self.link[state]
                length = self.length[state]
            if ch in self.next[state]:
                state = self.next[state][ch]
                length += 1
            else:
                state, length = 0, 0
            out.append(length)
        return out


def _normalized(text: str) -> tuple[str, list[int]]:
    """Case-folded text with runs of whitespace as one space, and each char's original offset."""
    chars: list[str] = []
    offsets: list[int] = []
    space = False
    for i, ch in enumerate(text):
        if ch.isspace():
            if not space and chars:
                chars.append(" ")
                offsets.append(i)
            space = True
            continue
        space = False
        chars.append(ch.lower())
        offsets.append(i)
    return "".join(chars), offsets


@dataclass(frozen=True, slots=True)
class Leaks:
    """What one system prompt makes a leak; shared by the requests that send it."""

    secrets: PatternSet | None
    copies: _Automaton | None
    min_overlap: int

    def copy_spans(self, text: str, start: int, final: bool) -> tuple[list[Span], int]:
        """Copies of the system prompt in ``text`` from ``start`` on, and where a copy still
        being written begins (``len(text)`` when none)."""
        if self.copies is None:
            return [], len(text)
        norm, offsets = _normalized(text)
        runs = self.copies.runs(norm)
        hold = len(text)
        if runs and runs[-1] >= HOLD_FROM_CHARS and not final:
            hold = offsets[len(runs) - runs[-1]]
        regions: list[list[int]] = []
        for i, length in enumerate(runs):
            if length >= self.min_overlap:
                lo = i - length + 1
                if regions and lo <= regions[-1][1] + 1:
                    regions[-1][0] = min(regions[-1][0], lo)
                    regions[-1][1] = i
                else:
                    regions.append([lo, i])
        spans: list[Span] = []
        for lo, hi in regions:
            if hi == len(runs) - 1 and not final:
                hold = min(hold, offsets[lo])  # still being written: it may grow
                continue
            begin, end = offsets[lo], offsets[hi] + 1
            if end > start:
                spans.append(Span(begin, end, COPY))
        return spans, hold


@lru_cache(maxsize=256)
def _leaks(system_texts: tuple[str, ...], min_overlap: int, secrets: bool) -> Leaks:
    system = "\n\n".join(system_texts)
    found = prompt_secrets(system) if secrets else []
    norm, _ = _normalized(system)
    return Leaks(
        PatternSet(_secret_specs(found), timeout_from_chars=0) if found else None,
        _Automaton(norm) if len(norm) >= min_overlap else None,
        min_overlap,
    )


class PromptLeakMatcher(StreamMatcher):
    def __init__(self, leaks: Leaks) -> None:
        self._leaks = leaks
        self._secrets = PatternStreamMatcher(leaks.secrets) if leaks.secrets is not None else None

    def scan(self, buffer: str, start: int, final: bool) -> StreamScan:
        spans, hold = self._leaks.copy_spans(buffer, start, final)
        if self._secrets is not None:
            found = self._secrets.scan(buffer, start, final)
            spans += found.spans
            hold = min(hold, found.hold_from)
        return StreamScan(tuple(sorted(spans, key=lambda s: s.start)), hold)


class _Never(StreamMatcher):
    def scan(self, buffer: str, start: int, final: bool) -> StreamScan:
        return StreamScan((), len(buffer))


class PromptLeakCheck(Check[PromptLeakOptions]):
    name: ClassVar[str] = "prompt_leak"
    default_entity: ClassVar[str] = COPY

    def __init__(self, options: PromptLeakOptions) -> None:
        super().__init__(options)

    def _leaks(self, context: RequestContext) -> Leaks | None:
        if not context.system_texts:
            return None
        return _leaks(context.system_texts, self.options.min_overlap_chars, self.options.secrets)

    def scan(self, text: str) -> CheckResult:
        return CheckResult.clean()  # nothing to compare with outside a request

    def scan_answer(self, text: str, context: RequestContext) -> CheckResult:
        leaks = self._leaks(context)
        if leaks is None:
            return CheckResult.clean()
        spans, _ = leaks.copy_spans(text, 0, True)
        hits = leaks.secrets.find(text) if leaks.secrets is not None else []
        result = to_result(hits)
        if not spans:
            return result
        return CheckResult(
            True,
            1.0,
            tuple(sorted((*result.spans, *spans), key=lambda s: s.start)),
            {**result.detail, "copies": len(spans)},
        )

    def stream_matcher(self, context: RequestContext = NO_CONTEXT) -> StreamMatcher:
        leaks = self._leaks(context)
        return PromptLeakMatcher(leaks) if leaks is not None else _Never()
