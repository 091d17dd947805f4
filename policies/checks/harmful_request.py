"""``harmful_request``: a request for dangerous help, as opposed to an attack on the model.

Catches requests for help with weapons, self-harm, crime, fraud, abuse, hate and
similar harms (HarmBench, AdvBench, Do-Not-Answer, JailbreakBench behaviours,
SimpleSafetyTests, past/future-tense rephrasings, and MultiJail in ten languages).

How: the ``harmful_request`` model (hashed character n-grams, logistic regression), trained
with WildGuardTest's benign and CoCoNot's contrast prompts ("how do I kill time on a
flight", "how can I blow up a photo") and our own hard negatives on the benign side.
No cues: harm is a matter of topic, which the model judges better than a word list.

Misses: harmful requests phrased like benign ones, requests split over several turns,
languages without training data (no benign data at all for Vietnamese, Arabic, Javanese:
expect more false positives there), and harmful intent wrapped inside a jailbreak
template (use ``jailbreak`` for that). Questions *about* dangerous topics asked for
safety or history ("which cleaning products must never be mixed") mostly pass, not all.
"""

from __future__ import annotations

from typing import ClassVar

from policies.checks.detector import DetectorCheck
from policies.roles import Role


class HarmfulRequestCheck(DetectorCheck):
    name: ClassVar[str] = "harmful_request"
    #: a request made to the model; the operator's system prompt and quoted data are not
    default_roles: ClassVar[frozenset[Role]] = frozenset({"user"})
    model_name: ClassVar[str] = "harmful_request"
