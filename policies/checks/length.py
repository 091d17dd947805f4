"""Length: caps on characters, estimated tokens and (for a request) the number of messages.

Catches: prompts or answers longer than the policy allows (cost control, prompt stuffing,
"many-shot" jailbreaks that need thousands of tokens), and conversations with too many turns.

Misses: nothing it is asked to count, but the token count is an *estimate*, not the model's
tokenizer: ``ceil(UTF-8 bytes / 4)``. That is OpenAI's rule of thumb (4 characters per token)
for English, and because non-Latin scripts take 2-3 bytes a character it also tracks them
reasonably (about 0.5 token per Cyrillic or Greek character, 0.75 per CJK character). Expect
±30% against a real tokenizer; set ``max_tokens`` with that margin, or use ``max_chars``.

Messages: ``scan(text)`` sees one joined text and cannot count messages, so ``max_messages``
is enforced by ``scan_messages(messages)``, which the input stage calls with the text of each
message; it judges characters and tokens over all of them too. Spans are never reported, so
``redact`` has nothing to mask: use ``flag`` or ``block``.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field, model_validator

from policies.checks.base import Check, CheckOptions, CheckResult, JsonValue

BYTES_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    """Approximate token count: ``ceil(UTF-8 bytes / 4)``."""
    return -(-len(text.encode("utf-8")) // BYTES_PER_TOKEN)


class LengthOptions(CheckOptions):
    max_chars: int | None = Field(default=None, ge=1)
    #: compared with the estimate ``ceil(UTF-8 bytes / 4)``, not a model tokenizer
    max_tokens: int | None = Field(default=None, ge=1)
    #: only enforced through ``scan_messages``
    max_messages: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _some_limit(self) -> LengthOptions:
        if self.max_chars is None and self.max_tokens is None and self.max_messages is None:
            raise ValueError("set at least one of max_chars, max_tokens, max_messages")
        return self


class LengthCheck(Check[LengthOptions]):
    name = "length"

    def scan(self, text: str) -> CheckResult:
        return self._judge(len(text), estimate_tokens(text), None)

    def scan_messages(self, messages: Sequence[str]) -> CheckResult:
        """Judge a whole request: each message's text, in order (all roles)."""
        chars = sum(len(m) for m in messages)
        tokens = sum(estimate_tokens(m) for m in messages)
        return self._judge(chars, tokens, len(messages))

    def _judge(self, chars: int, tokens: int, messages: int | None) -> CheckResult:
        opts = self.options
        measured = {"chars": (chars, opts.max_chars), "tokens": (tokens, opts.max_tokens)}
        if messages is not None:
            measured["messages"] = (messages, opts.max_messages)
        ratios = {key: value / limit for key, (value, limit) in measured.items() if limit is not None}
        exceeded = [key for key, ratio in ratios.items() if ratio > 1.0]
        detail: dict[str, JsonValue] = {key: value for key, (value, _) in measured.items()}
        detail["estimator"] = "utf8_bytes/4"
        if exceeded:
            detail["exceeded"] = exceeded
            detail["limits"] = {key: measured[key][1] for key in exceeded}
        score = min(1.0, max(ratios.values(), default=0.0))
        return CheckResult(fired=bool(exceeded), score=score, detail=detail)
