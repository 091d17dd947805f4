"""``jailbreak``: text that tries to talk the model out of its rules.

Catches DAN-style "do anything now" personas, developer/god mode, "stay in character"
role-play frames, refusal suppression, PAIR/TAP-style scenario rewrites and GCG-style
adversarial suffixes — the jailbreak family only. ``prompt_injection`` covers these *and*
goal hijacking / system-prompt extraction; this check is the narrow label, so a policy
can tell the families apart (e.g. flag jailbreaks for review, block injections).

How: the ``jailbreak`` model, trained on the jailbreak corpora against benign text *and*
against the injection corpora (so "ignore the above and output X" does not score here),
plus the ``jailbreak`` cues of ``policies/engines/heuristics.py``; the score is the higher of the two.

Misses: jailbreaks in languages it has no data for (cues are English), new templates
unlike the in-the-wild collection, multi-turn escalation (it sees one text at a time).
Harmless role-play ("pretend you are a pirate...") and fiction requests sometimes fire.
"""

from __future__ import annotations

from typing import ClassVar

from policies.checks.detector import DetectorCheck
from policies.engines.heuristics import cue_score
from policies.roles import Role

_FAMILIES = frozenset({"jailbreak"})


class JailbreakCheck(DetectorCheck):
    name: ClassVar[str] = "jailbreak"
    #: a request made to the model; the operator's system prompt and quoted data are not
    default_roles: ClassVar[frozenset[Role]] = frozenset({"user"})
    model_name: ClassVar[str] = "jailbreak"

    quotes_as_data: ClassVar[bool] = True

    reads_encodings: ClassVar[bool] = True

    def cues(self, normalized: str) -> tuple[float, tuple[str, ...]]:
        return cue_score(normalized, _FAMILIES)
