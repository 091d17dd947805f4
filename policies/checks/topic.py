"""Topic: keep a conversation on the subjects a deployment is for, and off the ones it is not.

Topics are data in the policy: a name and its keywords or phrases. A keyword matches whole
words, case-insensitively; ``invest*`` also matches "investing", "investments"; a phrase
matches across any whitespace; keywords in scripts written without spaces (Chinese,
Japanese, Thai...) match anywhere::

    - check: topic
      denied: {weapons: [gun, rifle, ammunition, "build a bomb"], medical_advice: [diagnos*, dosage]}
      allowed: {banking: [account, card, loan*, mortgage, transfer*]}
      action: block

Fires when a denied topic has ``min_hits`` keyword hits (spans name the topic, so ``redact``
masks the words as ``<TOPIC_WEAPONS>``), or, when ``allowed`` is set, when no allowed topic
is hit at all (off topic; texts under ``off_topic_min_words`` words are let through so that
"hi" or "thanks" is not off topic). Score: ``1 - 2^-(hits / min_hits)`` of the denied hits
(0.5 at the threshold), 1.0 when off topic.

Misses, by design of keyword matching: synonyms, paraphrase, misspellings and other
languages not listed; meaning ("shoot a photo" hits a ``shoot`` keyword); negation and
quotation ("I won't discuss guns" still hits). Use it for clear-cut scoping; pair it with a
classifier check for intent.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from pydantic import Field, field_validator, model_validator

from policies.checks.base import Check, CheckOptions, CheckResult, JsonValue, Span

Keywords = dict[str, tuple[str, ...]]
_WORD = re.compile(r"\w+")


def _spaceless_script(keyword: str) -> bool:
    """Thai, CJK, kana, hangul: words are not separated by spaces, so no word boundaries."""
    return any("\u0e00" <= ch <= "\u0e7f" or ch >= "\u2e80" for ch in keyword)


def keyword_pattern(keyword: str) -> str:
    stem = keyword.strip().lower()
    wildcard = stem.endswith("*")
    body = r"\s+".join(re.escape(part) for part in stem.rstrip("*").split())
    if wildcard:
        body += r"\w*"
    if _spaceless_script(stem):
        return body
    return rf"(?<!\w){body}(?!\w)"


@dataclass(frozen=True, slots=True)
class _Topic:
    name: str
    keywords: tuple[str, ...]
    pattern: re.Pattern[str]

    @staticmethod
    def build(name: str, keywords: tuple[str, ...]) -> _Topic:
        alternation = "|".join(f"(?P<k{i}>{keyword_pattern(k)})" for i, k in enumerate(keywords))
        return _Topic(name, keywords, re.compile(alternation, re.IGNORECASE))

    def hits(self, text: str) -> list[re.Match[str]]:
        return list(self.pattern.finditer(text))

    def keyword_of(self, match: re.Match[str]) -> str:
        return self.keywords[int((match.lastgroup or "k0")[1:])]


class TopicOptions(CheckOptions):
    allowed: Keywords = Field(default_factory=dict)
    denied: Keywords = Field(default_factory=dict)
    #: keyword hits a denied topic needs before it counts
    min_hits: int = Field(default=1, ge=1)
    #: texts with fewer words are never judged off topic
    off_topic_min_words: int = Field(default=0, ge=0)

    @field_validator("allowed", "denied")
    @classmethod
    def _keywords(cls, topics: Keywords) -> Keywords:
        for name, keywords in topics.items():
            if not keywords or any(not k.strip().rstrip("*").strip() for k in keywords):
                raise ValueError(f"topic {name!r}: give at least one keyword, and no empty ones")
        return topics

    @model_validator(mode="after")
    def _some_topic(self) -> TopicOptions:
        if not self.allowed and not self.denied:
            raise ValueError("set 'allowed' or 'denied' topics (or both)")
        return self


class TopicCheck(Check[TopicOptions]):
    name = "topic"

    def __init__(self, options: TopicOptions) -> None:
        super().__init__(options)
        self._denied = [_Topic.build(n, k) for n, k in self.options.denied.items()]
        self._allowed = [_Topic.build(n, k) for n, k in self.options.allowed.items()]

    def scan(self, text: str) -> CheckResult:
        min_hits = self.options.min_hits
        denied = {t: t.hits(text) for t in self._denied}
        denied = {t: hits for t, hits in denied.items() if hits}
        firing = {t: hits for t, hits in denied.items() if len(hits) >= min_hits}
        total = sum(len(h) for h in firing.values()) or max((len(h) for h in denied.values()), default=0)
        score = 1.0 - 0.5 ** (total / min_hits)
        detail: dict[str, JsonValue] = {"denied": {t.name: _counts(t, h) for t, h in denied.items()}}
        if firing:
            spans = sorted(
                (Span(m.start(), m.end(), _entity(t.name)) for t, hits in firing.items() for m in hits),
                key=lambda s: (s.start, s.end),
            )
            detail["reason"] = "denied_topic"
            detail["topics"] = [t.name for t in firing]
            return CheckResult(fired=True, score=score, spans=tuple(spans), detail=detail)
        if not self._allowed:
            return CheckResult(fired=False, score=score, detail=detail)
        allowed = {t.name: _counts(t, h) for t in self._allowed if (h := t.hits(text))}
        detail["allowed"] = allowed
        if allowed or len(_WORD.findall(text)) < self.options.off_topic_min_words:
            return CheckResult(fired=False, score=score, detail=detail)
        detail["reason"] = "off_topic"
        return CheckResult(fired=True, score=1.0, detail=detail)


def _counts(topic: _Topic, hits: list[re.Match[str]]) -> dict[str, int]:
    """Hits per policy keyword: the policy's words, never the text's."""
    return dict(Counter(topic.keyword_of(m) for m in hits))


def _entity(topic: str) -> str:
    return "TOPIC_" + re.sub(r"\W+", "_", topic).strip("_").upper()
