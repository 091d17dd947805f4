"""The check interface (policies/checks/base.py): options named once, as the type argument."""

from __future__ import annotations

from policies.checks.base import Check, CheckOptions, CheckResult
from policies.checks.detector import DetectorOptions
from policies.checks.length import LengthCheck, LengthOptions
from policies.checks.pii import PiiCheck, PiiOptions
from policies.checks.prompt_injection import PromptInjectionCheck
from policies.registry import check_class, check_names


def test_options_model_comes_from_the_type_argument() -> None:
    assert PiiCheck.Options is PiiOptions
    assert LengthCheck.Options is LengthOptions
    # inherited from DetectorCheck(Check[DetectorOptions])
    assert PromptInjectionCheck.Options is DetectorOptions


def test_every_builtin_check_names_its_own_options_model() -> None:
    for name in check_names():
        klass = check_class(name)
        assert klass is not None
        assert klass.Options is not CheckOptions, name
        assert issubclass(klass.Options, CheckOptions)


def test_options_of_another_model_are_read_as_the_checks_own() -> None:
    check = PiiCheck(CheckOptions())
    assert isinstance(check.options, PiiOptions)
    assert check.options == PiiOptions()


def test_a_check_without_options_keeps_the_base_model() -> None:
    class Plain(Check[CheckOptions]):
        name = "plain"

        def scan(self, text: str) -> CheckResult:
            return CheckResult.clean()

    assert Plain.Options is CheckOptions
    plain = Plain(CheckOptions())
    assert plain.for_response_format({"type": "json_object"}) is plain


def test_a_plain_subclass_keeps_its_parents_options() -> None:
    # training subclasses a check to swap its model in (policies.training.train_classifiers)
    class Fold(PromptInjectionCheck):
        pass

    assert Fold.Options is DetectorOptions
