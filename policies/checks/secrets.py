"""``secrets``: credentials in text, each redacted as ``SECRET``.

Catches (rules are data, in ``policies/data/secrets.yaml``): private key blocks, OpenAI,
Anthropic, AWS, GitHub, GitLab, Slack, Stripe, Google and Hugging Face keys, JWTs, a set of
vendor tokens with distinctive prefixes, passwords in connection strings and in
``key = "value"`` assignments and ``.env`` lines, and random-looking tokens (long, mixed
case with digits, Shannon entropy of at least 4 bits per character).

Misses: secrets without a known shape or a telling key name (a password alone in prose),
short or low-entropy tokens with no prefix, hex-only secrets without a key name (hashes
look the same), secrets split across lines or encoded, and placeholders by design
(``xxxx``, ``<your-key>``, ``${TOKEN}``). On the noseyparker rule examples it finds about
four in five positives; see tests/policies/test_check_secrets.py for the measured numbers.
"""

from __future__ import annotations

import math
from collections import Counter
from functools import cache
from pathlib import Path
from typing import ClassVar

import regex
from pydantic import BaseModel, ConfigDict, Field, model_validator

from policies.checks.base import NO_CONTEXT, Check, CheckOptions, CheckResult, RequestContext, StreamMatcher, to_result
from policies.engines.patterns import (
    PatternSet,
    PatternSpec,
    PatternStreamMatcher,
    Validator,
    check_regex,
)
from policies.yamlio import load_model_file

RULES_FILE = Path(__file__).resolve().parent.parent / "data" / "secrets.yaml"
ENTITY = "SECRET"

_PLACEHOLDER = regex.compile(
    r"x{4}|\*{4}|\.{3}|[<>]|\$\{|\{\{|\{\d*\}|%[sd]|your[_-]?|changeme|example|placeholder|^(.)\1*$", regex.I
)
# Values that read as code, not as a credential: dotted names, calls, numbers, literals,
# and values that start or end like an expression (`$VAR`, `#{x}`, `"+ name +"`).
_CODE_VALUE = regex.compile(
    r"[A-Za-z_$]+(?:\.[A-Za-z_$]+)+(?:\(.*\))?|[\w.]+\(.*\)?|[\d.,_\s-]+"
    r"|none|null|nil|true|false|undefined|string|str|bool|int|text|bearer|basic|required|optional"
    r"|.*\s\|\s.*|\w+\[.*\]",
    regex.I,
)
_DIGITS = regex.compile(r"\d+")
_CODE_EDGE = regex.compile(r"^[$#({\[%&@+./\\]|[+(\[,]$|#\{")


class SecretRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    regex: str
    keywords: tuple[str, ...] = ()
    ignorecase: bool = False
    min_entropy: float = Field(default=0.0, ge=0.0)
    min_digit_groups: int = Field(default=0, ge=0)
    require_mixed_case: bool = False
    reject_code: bool = False
    check_placeholders: bool = True
    score: float = Field(default=1.0, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _compiles(self) -> SecretRule:
        check_regex(self.expanded_regex())
        return self

    def expanded_regex(self) -> str:
        words = "|".join(regex.escape(k) for k in sorted(self.keywords, key=len, reverse=True))
        return self.regex.replace("{keywords}", f"(?:{words})(?![A-Za-z])")


class SecretRules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: tuple[SecretRule, ...]


@cache
def load_rules(path: Path = RULES_FILE) -> tuple[SecretRule, ...]:
    return load_model_file(SecretRules, path).rules


def shannon_entropy(value: str) -> float:
    if not value:
        return 0.0
    size = len(value)
    return -sum(n / size * math.log2(n / size) for n in Counter(value).values())


def rule_validator(rule: SecretRule) -> Validator:
    keywords = tuple(k.lower() for k in rule.keywords)

    def judge(value: str) -> float | None:
        lowered = value.lower()
        if rule.check_placeholders and _PLACEHOLDER.search(value):
            return None
        if keywords and any(k in lowered for k in keywords):
            return None  # `password = "password"`, `token: "<TOKEN>"`
        if rule.reject_code and (_CODE_VALUE.fullmatch(value.strip()) or _CODE_EDGE.search(value)):
            return None
        if rule.min_digit_groups and len(_DIGITS.findall(value)) < rule.min_digit_groups:
            return None
        if rule.require_mixed_case and (value.lower() == value or value.upper() == value):
            return None
        if rule.min_entropy and shannon_entropy(value) < rule.min_entropy:
            return None
        return rule.score

    return judge


def rule_spec(rule: SecretRule) -> PatternSpec:
    compiled = regex.compile(rule.expanded_regex())
    return PatternSpec(
        name=rule.name,
        entity_type=ENTITY,
        regex=rule.expanded_regex(),
        score=rule.score,
        flags=regex.IGNORECASE if rule.ignorecase else 0,
        group="secret" if "secret" in compiled.groupindex else 0,
        validate=rule_validator(rule),
    )


class SecretsOptions(CheckOptions):
    #: run only these rules (default: all); names from policies/data/secrets.yaml
    rules: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _known_rules(self) -> SecretsOptions:
        known = {r.name for r in load_rules()}
        unknown = sorted((set(self.rules or ()) | set(self.exclude)) - known)
        if unknown:
            raise ValueError(f"unknown secret rule(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return self


class SecretsCheck(Check[SecretsOptions]):
    name: ClassVar[str] = "secrets"
    default_entity: ClassVar[str] = ENTITY

    def __init__(self, options: SecretsOptions) -> None:
        super().__init__(options)
        opts = self.options
        chosen = [
            r for r in load_rules() if (opts.rules is None or r.name in opts.rules) and r.name not in opts.exclude
        ]
        self._patterns = PatternSet(rule_spec(r) for r in chosen)

    def scan(self, text: str) -> CheckResult:
        return to_result(self._patterns.find(text))

    def stream_matcher(self, context: RequestContext = NO_CONTEXT) -> StreamMatcher:
        return PatternStreamMatcher(self._patterns)
