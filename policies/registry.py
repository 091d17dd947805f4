"""The one registry of built-in checks: policy name -> ``module:Class``.

Modules are imported on first use so that a gateway whose policy needs no NER model
never imports presidio or spaCy. Adding a check means adding one module under
``policies/checks/`` and one line here.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import Any

from policies.checks.base import Check

BUILTIN_CHECKS: dict[str, str] = {
    "pii": "policies.checks.pii:PiiCheck",
    "secrets": "policies.checks.secrets:SecretsCheck",
    "prompt_injection": "policies.checks.prompt_injection:PromptInjectionCheck",
    "indirect_injection": "policies.checks.indirect_injection:IndirectInjectionCheck",
    "prompt_leak": "policies.checks.prompt_leak:PromptLeakCheck",
    "jailbreak": "policies.checks.jailbreak:JailbreakCheck",
    "harmful_request": "policies.checks.harmful_request:HarmfulRequestCheck",
    "deny_terms": "policies.checks.deny_terms:DenyTermsCheck",
    "regex": "policies.checks.regex_check:RegexCheck",
    "topic": "policies.checks.topic:TopicCheck",
    "toxicity": "policies.checks.toxicity:ToxicityCheck",
    "step_verifier": "policies.checks.step_verifier:StepVerifierCheck",
    "length": "policies.checks.length:LengthCheck",
    "json_schema": "policies.checks.json_schema:JsonSchemaCheck",
    "validator": "policies.checks.validator:GuardrailsValidatorCheck",
}


def check_names() -> list[str]:
    return sorted(BUILTIN_CHECKS)


@cache
def check_class(name: str) -> type[Check[Any]] | None:
    target = BUILTIN_CHECKS.get(name)
    if target is None:
        return None
    module_name, _, attr = target.partition(":")
    klass = getattr(importlib.import_module(module_name), attr)
    if not (isinstance(klass, type) and issubclass(klass, Check)):
        raise TypeError(f"{target} is not a Check")
    return klass
