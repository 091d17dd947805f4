"""``prompt_injection``: any attempt to override the instructions the model was given.

Catches (measured figures in ``policies/models/manifest.json`` and ``benchmarks/detection.py``):
goal hijacking ("ignore the above and output ..."), system-prompt extraction, fake
instruction delimiters, and every jailbreak the ``jailbreak`` check catches: following
OWASP LLM01, a jailbreak is a direct prompt injection, so this check is the broad one and
``jailbreak`` the narrow one (use this check to block, the other to label the family).

How: the ``prompt_attack`` model (hashed character n-grams, logistic regression, trained
on in-the-wild and DAN-family jailbreaks, JailbreakBench attacks, PromptInject/Giskard
and XSafety goal hijacking in ten languages, against benign instructions, chit-chat and
maths in 27 languages and hard negatives such as "how do I kill a Python process") plus
the ``injection`` and ``jailbreak`` cues of ``policies/engines/heuristics.py`` ("ignore all previous
instructions" in 16 languages, "print your system prompt", DAN/developer mode). The score
is the higher of the two; long texts are scored window by window. A short quote inside the
user's sentence is scored apart from the user's own words and decides only together with
them (``policies/engines/quotes.py``), so translating or writing a detection rule for an attack phrase passes.

Misses: indirect injections that are ordinary instructions hidden in a document (BIPIA:
"write a short story ..." inside an e-mail) — only the context makes them attacks, and
a whole-text classifier cannot see the context; attacks in styles and languages it has
no data for (Italian, Korean, Vietnamese... are covered by the cues only); paraphrased
or encoded attacks (base64, leetspeak). Benign text *about* injections ("what is
prompt injection?") mostly passes; role-play requests sometimes fire.
"""

from __future__ import annotations

from typing import ClassVar

from policies.checks.detector import DetectorCheck
from policies.engines.heuristics import cue_score
from policies.roles import Role

_FAMILIES = frozenset({"injection", "jailbreak"})


class PromptInjectionCheck(DetectorCheck):
    name: ClassVar[str] = "prompt_injection"
    #: a request made to the model; the operator's system prompt and quoted data are not
    default_roles: ClassVar[frozenset[Role]] = frozenset({"user"})
    model_name: ClassVar[str] = "prompt_attack"

    quotes_as_data: ClassVar[bool] = True

    reads_encodings: ClassVar[bool] = True

    def cues(self, normalized: str) -> tuple[float, tuple[str, ...]]:
        return cue_score(normalized, _FAMILIES)
