"""``regex``: spans matching the policy's own regular expressions.

Catches: whatever the patterns describe (internal ticket ids, project code names, account
formats), in whole texts and token by token in streams. Patterns are compiled with the
``regex`` package when the policy loads, so an invalid pattern is a policy error at its line.

Misses: anything the patterns do not say. Write them self-delimiting and greedy
(``ACME-\\d+(?!\\d)``, not ``ACME-.+?``); a lazy pattern with nothing after it matches too
little. A pattern that can match a long run (``.*``) makes a stream hold that whole run back.
Every search is bounded by a timeout, so a pattern that backtracks catastrophically fails
the check (its ``on_error`` applies) instead of stalling the gateway.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import regex
from pydantic import Field, field_validator, model_validator

from policies.checks.base import NO_CONTEXT, Check, CheckOptions, CheckResult, RequestContext, StreamMatcher, to_result
from policies.engines.patterns import PatternSet, PatternSpec, PatternStreamMatcher, check_regex

RegexFlag = Literal["ignorecase", "multiline", "dotall"]
_FLAGS: dict[str, int] = {
    "ignorecase": regex.IGNORECASE,
    "multiline": regex.MULTILINE,
    "dotall": regex.DOTALL,
}


class RegexOptions(CheckOptions):
    #: a list of patterns, or a map of name -> pattern (names appear in audit details)
    patterns: list[str] | dict[str, str] = Field(min_length=1)
    entity: str = Field(default="REGEX", pattern=r"^[A-Z][A-Z0-9_]*$")
    flags: tuple[RegexFlag, ...] = ()

    @field_validator("patterns")
    @classmethod
    def _not_empty(cls, value: list[str] | dict[str, str]) -> list[str] | dict[str, str]:
        items = value.values() if isinstance(value, dict) else value
        if any(not p for p in items):
            raise ValueError("a pattern must not be empty")
        return value

    @model_validator(mode="after")
    def _compiles(self) -> RegexOptions:
        for pattern in self.named_patterns().values():
            check_regex(pattern, self.regex_flags())
        return self

    def named_patterns(self) -> dict[str, str]:
        if isinstance(self.patterns, dict):
            return dict(self.patterns)
        return {f"pattern_{i}": p for i, p in enumerate(self.patterns)}

    def regex_flags(self) -> int:
        flags = 0
        for name in self.flags:
            flags |= _FLAGS[name]
        return flags


class RegexCheck(Check[RegexOptions]):
    name: ClassVar[str] = "regex"
    default_entity: ClassVar[str] = "REGEX"

    def __init__(self, options: RegexOptions) -> None:
        super().__init__(options)
        opts = self.options
        self._patterns = PatternSet(
            (
                PatternSpec(name=name, entity_type=opts.entity, regex=pattern, flags=opts.regex_flags())
                for name, pattern in opts.named_patterns().items()
            ),
            timeout_from_chars=0,
        )

    def scan(self, text: str) -> CheckResult:
        return to_result(self._patterns.find(text))

    def stream_matcher(self, context: RequestContext = NO_CONTEXT) -> StreamMatcher:
        return PatternStreamMatcher(self._patterns)
