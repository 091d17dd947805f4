"""``toxicity``: insults, slurs, hate, threats, harassment and sexual content.

How: the higher of (a) the ``toxicity`` model (hashed character n-grams, logistic
regression trained on the Davidson tweets, Surge AI's toxicity set, ToxiGen's
demonstrations, OpenAI's moderation samples and RealToxicityPrompts' selected prompts)
and (b) a lexicon (Surge AI's graded profanity list and LDNOOBW) scored by noisy-OR, so
one mild word does not fire but a slur or several offensive words do.

Catches explicit abuse and profanity in English well; implicit hate ("those people
should go back where they came from") partly.
Misses: sarcasm and coded language, non-English toxicity (all training data is English),
toxicity split across turns. Fires on quoted or reclaimed slurs and on clinical or
animal senses of listed words ("the cock crowed") when context does not outweigh them.
"""

from __future__ import annotations

import json
from functools import cache
from typing import ClassVar

from policies.checks.detector import DetectorCheck
from policies.engines.classifier import MODELS_DIR

LEXICON_FILE = MODELS_DIR / "toxicity_lexicon.json"
_STRIP = ".,;:!?\"'()[]{}<>“”‘’*_-~`"
_MAX_WORDS = 4


def lexicon_key(text: str) -> str:
    """A term or phrase as the lexicon stores it: lower case, punctuation at word ends dropped."""
    return " ".join(w for w in (w.strip(_STRIP) for w in text.casefold().split()) if w)


@cache
def load_lexicon() -> dict[str, float]:
    data = json.loads(LEXICON_FILE.read_text(encoding="utf-8"))
    return {str(k): float(v) for k, v in data["terms"].items()}


def phrase_starts(terms: dict[str, float]) -> dict[str, int]:
    """First word of each phrase of 2+ words -> the most words a phrase starting with it has."""
    longest: dict[str, int] = {}
    for term in terms:
        parts = term.split(" ")
        if 1 < len(parts) <= _MAX_WORDS:
            longest[parts[0]] = max(longest.get(parts[0], 0), len(parts))
    return longest


@cache
def _shipped_starts() -> dict[str, int]:
    return phrase_starts(load_lexicon())


def lexicon_score(
    normalized: str, terms: dict[str, float], starts: dict[str, int] | None = None
) -> tuple[float, tuple[str, ...]]:
    """Noisy-OR of the weights of distinct lexicon phrases (1 to 4 words) in the text.

    ``starts`` is ``phrase_starts(terms)``, passed in when ``terms`` is used more than once."""
    words = [w for w in (w.strip(_STRIP) for w in normalized.split()) if w]
    longest = phrase_starts(terms) if starts is None else starts
    # Most texts hold no listed word and begin no listed phrase: one look per distinct word
    # says so, and only a text that does walks its words (in order, so the noisy-OR below
    # multiplies the same weights in the same order).
    distinct = set(words)
    listed = {w for w in distinct if w in terms}
    starting = {w for w in distinct if w in longest}
    if not listed and not starting:
        return 0.0, ()
    found: dict[str, float] = {}
    for i, word in enumerate(words):
        if word in listed:
            found[word] = terms[word]
        if word not in starting:
            continue
        # Most words begin no listed phrase: only those that do pay for building phrases.
        for n in range(2, min(longest[word], len(words) - i) + 1):
            phrase = " ".join(words[i : i + n])
            weight = terms.get(phrase)
            if weight is not None:
                found[phrase] = weight
    miss = 1.0
    for weight in found.values():
        miss *= 1.0 - weight
    # Only the count is reported: the terms are words of the user's text, and a record
    # kept with ``store_text: none`` must not carry them.
    return 1.0 - miss, ((f"lexicon_terms={len(found)}",) if found else ())


class ToxicityCheck(DetectorCheck):
    name: ClassVar[str] = "toxicity"
    model_name: ClassVar[str] = "toxicity"
    #: evidence would repeat the slurs in the audit record
    explain: ClassVar[bool] = False

    def warm(self) -> None:
        super().warm()
        _shipped_starts()

    def cues(self, normalized: str) -> tuple[float, tuple[str, ...]]:
        return lexicon_score(normalized, load_lexicon(), _shipped_starts())
