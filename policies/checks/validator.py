"""Any installed guardrails-ai validator, named by import path, as a Warden check.

    - validator: guardrails.hub.RegexMatch      # or my_package.validators:NoCompetitors
      args: {regex: "^[A-Z].*"}
      action: block

Catches and misses whatever the validator does. The class is imported, and ``args`` are
matched against its constructor, when the policy loads, so a typo in the path or an argument
is a policy error with its line; ``on_fail`` is not accepted (the policy's ``action``
decides). ``scan`` calls the validator's ``validate(text, metadata)`` directly, not through a
``Guard`` (which costs about 2 ms a call): a ``FailResult`` fires, its ``error_spans`` become
spans (entity type from the validator's name, e.g. ``REGEX_MATCH``), and its ``fix_value`` and
error message go into the detail. The validator must be thread-safe, as checks are shared by
concurrent requests; guardrails' own telemetry stays off (see ``policies.guardrails_adapter``).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from policies.checks.base import Check, CheckOptions, CheckResult


class ValidatorOptions(CheckOptions):
    #: ``package.module.ClassName`` or ``package.module:ClassName``
    path: str
    args: dict[str, Any] = Field(default_factory=dict)
    #: passed to ``validate`` as its metadata (some hub validators read keys from it)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _importable(self) -> ValidatorOptions:
        from policies import guardrails_adapter  # late: importing guardrails takes seconds

        klass = guardrails_adapter.load_validator_class(self.path)
        guardrails_adapter.check_validator_args(klass, self.args)
        return self


class GuardrailsValidatorCheck(Check[ValidatorOptions]):
    name = "validator"

    def __init__(self, options: ValidatorOptions) -> None:
        super().__init__(options)
        from policies import guardrails_adapter

        klass = guardrails_adapter.load_validator_class(self.options.path)
        self._validator: Any = guardrails_adapter.build_validator(klass, self.options.args)

    def scan(self, text: str) -> CheckResult:
        from policies import guardrails_adapter

        return guardrails_adapter.run_validator(self._validator, text, self.options.metadata)
