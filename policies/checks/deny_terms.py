"""``deny_terms``: spans where one of the policy's terms appears.

Catches: each term case-insensitively, as a whole word by default (``secret`` does not fire
inside ``secretary``), with any run of whitespace between the words of a multi-word term
(``Project  Phoenix`` across a line break). In streams, a word that could still become a
term is held back until the next character decides it.

Misses: spelling variants, inflections not listed (``phoenixes``), homoglyphs and
obfuscation (``p.h.o.e.n.i.x``), and meaning: list every form you need, or use ``regex``.
"""

from __future__ import annotations

from typing import ClassVar

import regex
from pydantic import Field, field_validator

from policies.checks.base import NO_CONTEXT, Check, CheckOptions, CheckResult, RequestContext, StreamMatcher, to_result
from policies.engines.patterns import PatternSet, PatternSpec, PatternStreamMatcher


class DenyTermsOptions(CheckOptions):
    terms: list[str] = Field(min_length=1)
    whole_word: bool = True
    case_sensitive: bool = False
    entity: str = Field(default="DENY_TERM", pattern=r"^[A-Z][A-Z0-9_]*$")

    @field_validator("terms")
    @classmethod
    def _no_blank_terms(cls, terms: list[str]) -> list[str]:
        if any(not t.strip() for t in terms):
            raise ValueError("a term must not be blank")
        return terms


def terms_regex(terms: list[str], whole_word: bool) -> str:
    """One alternation, longest terms first so ``foo bar`` wins over ``foo``."""
    words = sorted({t.strip() for t in terms}, key=lambda t: (-len(t), t))
    body = "|".join(r"\s+".join(regex.escape(w) for w in term.split()) for term in words)
    if whole_word:
        # Lookarounds instead of \b so that terms starting or ending with punctuation
        # (``C++``, ``.env``) still need a non-word neighbour to count as whole.
        return rf"(?<!\w)(?:{body})(?!\w)"
    return f"(?:{body})"


class DenyTermsCheck(Check[DenyTermsOptions]):
    name: ClassVar[str] = "deny_terms"
    default_entity: ClassVar[str] = "DENY_TERM"

    def __init__(self, options: DenyTermsOptions) -> None:
        super().__init__(options)
        opts = self.options
        flags = 0 if opts.case_sensitive else regex.IGNORECASE
        spec = PatternSpec(
            name="deny_terms",
            entity_type=opts.entity,
            regex=terms_regex(opts.terms, opts.whole_word),
            flags=flags,
        )
        self._patterns = PatternSet([spec])

    def scan(self, text: str) -> CheckResult:
        return to_result(self._patterns.find(text))

    def stream_matcher(self, context: RequestContext = NO_CONTEXT) -> StreamMatcher:
        return PatternStreamMatcher(self._patterns)
