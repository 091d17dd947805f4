from __future__ import annotations

from typing import Any

import pytest
from guardrails.validator_base import ErrorSpan, FailResult, PassResult, Validator, register_validator
from pydantic import ValidationError

from policies.checks.validator import GuardrailsValidatorCheck
from policies.guardrails_adapter import telemetry_state
from policies.schema import CheckSpec, Policy
from policies.yamlio import YamlModelError, load_model

HERE = __name__  # "tests.policies.test_check_validator": the import path of the classes below


@register_validator(name="warden-tests/no-word", data_type="string")
class NoWord(Validator):  # type: ignore[misc]
    """A real guardrails validator: fails on a word, with a span and a fix."""

    def __init__(self, word: str, on_fail: Any = None) -> None:
        super().__init__(on_fail=on_fail, word=word)
        self.word = word

    def _validate(self, value: Any, metadata: dict[str, Any]) -> Any:
        at = value.lower().find(self.word)
        if at < 0:
            return PassResult()
        return FailResult(
            error_message=f"contains {self.word!r}",
            fix_value=value[:at] + "***" + value[at + len(self.word) :],
            error_spans=[ErrorSpan(start=at, end=at + len(self.word), reason="forbidden word")],
        )


@register_validator(name="warden-tests/needs-metadata", data_type="string")
class NeedsMetadata(Validator):  # type: ignore[misc]
    def _validate(self, value: Any, metadata: dict[str, Any]) -> Any:
        if metadata.get("tenant") == "acme":
            return PassResult()
        return FailResult(error_message="unknown tenant")


class Unregistered(Validator):  # type: ignore[misc]
    def _validate(self, value: Any, metadata: dict[str, Any]) -> Any:
        return PassResult()


class NotAValidator:
    pass


def build(entry: dict[str, Any]) -> GuardrailsValidatorCheck:
    spec = CheckSpec.model_validate(entry)
    assert spec.check == "validator"
    return GuardrailsValidatorCheck(spec.options)


def test_validator_by_import_path_maps_fail_to_spans_and_fix() -> None:
    check = build({"validator": f"{HERE}.NoWord", "args": {"word": "secret"}, "action": "redact"})
    text = "the SECRET plan"
    result = check.scan(text)
    assert result.fired
    assert result.score == 1.0
    (span,) = result.spans
    assert (span.start, span.end) == (4, 10)
    assert span.entity_type == "NO_WORD"  # from the registered name warden-tests/no-word
    assert result.detail["fix_value"] == "the *** plan"
    assert result.detail["reasons"] == ["forbidden word"]
    assert result.detail["validator"] == "warden-tests/no-word"
    assert result.detail["error"] == "contains 'secret'"


def test_pass_result_is_clean() -> None:
    check = build({"validator": f"{HERE}.NoWord", "args": {"word": "secret"}})
    result = check.scan("nothing to see")
    assert not result.fired
    assert result.spans == ()


def test_colon_path_and_metadata_are_passed_to_validate() -> None:
    entry: dict[str, Any] = {"validator": f"{HERE}:NeedsMetadata"}
    assert build(entry).scan("x").fired
    assert not build({**entry, "metadata": {"tenant": "acme"}}).scan("x").fired
    assert build({**entry, "metadata": {"tenant": "other"}}).scan("x").detail["error"] == "unknown tenant"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"validator": "no_such_package.Thing"}, "cannot import 'no_such_package'"),
        ({"validator": f"{HERE}.Missing"}, "has no attribute 'Missing'"),
        ({"validator": f"{HERE}.NotAValidator"}, "not a guardrails Validator"),
        ({"validator": f"{HERE}.Unregistered"}, "not registered"),
        ({"validator": "NoDots"}, "import path"),
        ({"validator": f"{HERE}.NoWord", "args": {"wrod": "x"}}, "arguments"),
        ({"validator": f"{HERE}.NoWord"}, "arguments"),  # 'word' is required
        ({"validator": f"{HERE}.NoWord", "args": {"word": "x", "on_fail": "fix"}}, "on_fail"),
        ({"validator": f"{HERE}.NoWord", "args": {"word": "x", "use_local": False}}, "Guardrails Hub"),
        ({"validator": f"{HERE}.NoWord", "args": {"word": "x"}, "argz": {}}, "argz"),
    ],
)
def test_bad_entries_are_option_errors(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        CheckSpec.model_validate(entry)


def test_import_error_is_reported_with_file_and_line_at_policy_load() -> None:
    text = f"""name: p
input:
  - check: length
    max_chars: 100
  - validator: {HERE}.Nope
    args: {{}}
    action: block
"""
    with pytest.raises(YamlModelError) as info:
        load_model(Policy, text, "p.yaml")
    (error,) = info.value.errors
    assert error.file == "p.yaml"
    assert error.line == 5
    assert "Nope" in error.message


def test_policy_with_a_validator_loads_and_keeps_telemetry_off() -> None:
    text = f"""name: p
output:
  - validator: {HERE}.NoWord
    args: {{word: forbidden}}
    action: block
"""
    policy = load_model(Policy, text, "p.yaml")
    (spec,) = policy.output
    assert spec.options.path == f"{HERE}.NoWord"  # type: ignore[attr-defined]
    assert GuardrailsValidatorCheck(spec.options).scan("forbidden fruit").fired
    state = telemetry_state()
    assert state["enable_metrics"] is False
    assert state["hub_tracer"] is False
