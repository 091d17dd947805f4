"""``pii``: personal data, found with presidio-analyzer's recognizers.

Catches: pattern entities from presidio's own recognizers, with their checksums and
context words (EMAIL_ADDRESS with a real public suffix, CREDIT_CARD passing Luhn, IBAN_CODE
passing mod-97, US_SSN, IP_ADDRESS, URL, and every other presidio pattern entity), phone
numbers confirmed by python-phonenumbers, and with the offline spaCy model installed the
NER entities PERSON, LOCATION, NRP, ORGANIZATION and DATE_TIME.

Misses: names, places and organisations when the spaCy model is not installed (it then
falls back to patterns alone, logged once), and in streams always (streams use the
pattern path only, so put NER entities in ``input``/``output``); non-English text for
NER; numbers written in words or split by unusual separators; context words that were
already sent more than a few words before a value in a stream.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import ClassVar, Literal

from pydantic import Field

from policies import presidio_adapter
from policies.checks.base import NO_CONTEXT, Check, CheckOptions, CheckResult, RequestContext, StreamMatcher, to_result
from policies.engines.patterns import PatternSet, PatternStreamMatcher, merge

DEFAULT_ENTITIES = (
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "US_SSN",
    "IBAN_CODE",
    "IP_ADDRESS",
    "PERSON",
)


class PiiOptions(CheckOptions):
    entities: tuple[str, ...] = Field(default=DEFAULT_ENTITIES, min_length=1)
    #: presidio score a finding needs; 0.4 keeps phone numbers (0.4) and checksummed
    #: values (1.0) and drops the "very weak" patterns unless a context word backs them
    threshold: float = Field(default=0.4, ge=0.0, le=1.0)
    language: Literal["en"] = "en"
    #: the spaCy package used for NER; a name that is not installed means patterns only
    nlp_model: str = Field(default=presidio_adapter.NER_MODEL, pattern=r"^[A-Za-z_][\w.]*$")


@dataclass(frozen=True, slots=True)
class _Engines:
    patterns: PatternSet
    ner: presidio_adapter.NerAnalyzer | None
    ner_entities: tuple[str, ...]
    unavailable: tuple[str, ...]


class PiiCheck(Check[PiiOptions]):
    name: ClassVar[str] = "pii"
    default_entity: ClassVar[str] = "PII"

    def __init__(self, options: PiiOptions) -> None:
        super().__init__(options)
        self.options = self.options
        self._engines: _Engines | None = None
        self._lock = threading.Lock()

    def warm(self) -> None:
        self._get_engines()
        # What the checksums of the wanted entities import (presidio, phonenumbers); a
        # request that meets a candidate before this finished imports it itself.
        presidio_adapter.warm_validators(self.options.entities)

    def scan(self, text: str) -> CheckResult:
        engines = self._get_engines()
        hits = engines.patterns.find(text)
        if engines.ner is not None and engines.ner_entities:
            hits += engines.ner.analyze(text, engines.ner_entities, self.options.threshold)
        extra = {"ner_unavailable": list(engines.unavailable)} if engines.unavailable else None
        return to_result(merge(hits), extra)

    def stream_matcher(self, context: RequestContext = NO_CONTEXT) -> StreamMatcher:
        return PatternStreamMatcher(self._get_engines().patterns)

    def _get_engines(self) -> _Engines:
        # Built once per check (policy version) and then only read: presidio and spaCy
        # load here, not at import, so a policy without pii never pays for them.
        if self._engines is None:
            with self._lock:
                if self._engines is None:
                    self._engines = self._build()
        return self._engines

    def _build(self) -> _Engines:
        wanted = set(self.options.entities)
        by_pattern = presidio_adapter.pattern_entities()
        by_ner = presidio_adapter.NER_ENTITIES
        unknown = sorted(wanted - by_pattern - by_ner)
        if unknown:
            known = ", ".join(sorted(by_pattern | by_ner))
            raise ValueError(f"unknown PII entit{'y' if len(unknown) == 1 else 'ies'} {unknown}; known: {known}")
        patterns = PatternSet(presidio_adapter.pattern_specs(wanted & by_pattern), self.options.threshold)
        ner_entities = tuple(sorted(wanted & by_ner))
        ner = presidio_adapter.load_ner(self.options.nlp_model) if ner_entities else None
        unavailable = ner_entities if ner is None else ()
        return _Engines(patterns, ner, ner_entities, unavailable)
