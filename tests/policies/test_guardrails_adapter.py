from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from guardrails import Guard
from guardrails.errors import ValidationError as GuardrailsValidationError
from guardrails.validator_base import validators_registry
from pydantic import ValidationError

from policies import guardrails_adapter as adapter
from policies.checks.base import CheckResult, Span
from policies.registry import BUILTIN_CHECKS

REPO = Path(__file__).resolve().parents[2]


def module_exists(check: str) -> bool:
    return importlib.util.find_spec(BUILTIN_CHECKS[check].partition(":")[0]) is not None


@pytest.mark.parametrize("check", sorted(BUILTIN_CHECKS))
def test_every_registry_check_is_a_registered_validator(check: str) -> None:
    if check in adapter.NOT_WRAPPED:
        with pytest.raises(ValueError, match="not offered"):
            adapter.warden_validator(check)
        return
    klass = adapter.warden_validator(check)
    assert klass is adapter.warden_validator(check)  # made once
    assert klass.__name__ == adapter.validator_class_name(check)
    assert getattr(adapter, klass.__name__) is klass
    assert klass.rail_alias == f"warden/{check}"
    assert validators_registry[f"warden/{check}"] is klass


def test_register_all_covers_the_registry() -> None:
    wrapped = sorted(set(BUILTIN_CHECKS) - set(adapter.NOT_WRAPPED))
    assert all(module_exists(c) for c in wrapped)
    assert sorted(adapter.register_all()) == wrapped


def test_class_names() -> None:
    assert adapter.validator_class_name("step_verifier") == "WardenStepVerifier"
    assert adapter.validator_class_name("pii") == "WardenPii"
    with pytest.raises(AttributeError):
        _ = adapter.WardenNoSuchCheck


def test_length_through_a_real_guard() -> None:
    guard = Guard().use(adapter.WardenLength(max_chars=10, on_fail="exception"))
    assert guard.validate("short").validation_passed
    with pytest.raises(GuardrailsValidationError, match="warden/length"):
        guard.validate("far too long for the limit")


def test_topic_through_a_real_guard_fix_masks_spans() -> None:
    guard = Guard().use(adapter.WardenTopic(denied={"weapons": ["gun", "rifle*"]}, on_fail="fix"))
    outcome = guard.validate("I want a gun and two rifles.")
    assert outcome.validated_output == "I want a <TOPIC_WEAPONS> and two <TOPIC_WEAPONS>."
    (summary,) = outcome.validation_summaries
    assert summary.validator_status == "fail"
    assert [(s.start, s.end, s.reason) for s in summary.error_spans] == [
        (9, 12, "TOPIC_WEAPONS"),
        (21, 27, "TOPIC_WEAPONS"),
    ]


def test_step_verifier_through_a_real_guard() -> None:
    guard = Guard().use(adapter.WardenStepVerifier(on_fail="noop"))
    good = guard.validate("1. 200 × 0.8 = 160\n2. 160 - 15 = 145\nFinal answer: 145")
    assert good.validation_passed
    bad = guard.validate("1. 200 × 0.8 = 150\n2. 150 - 15 = 135\nFinal answer: 135")
    assert not bad.validation_passed
    (summary,) = bad.validation_summaries
    assert summary.failure_reason == "warden/step_verifier fired: arithmetic"


def test_json_schema_through_a_real_guard() -> None:
    validator = adapter.WardenJsonSchema(schema={"type": "object", "required": ["id"]}, on_fail="noop")
    guard = Guard().use(validator)
    assert guard.validate('{"id": 1}').validation_passed
    assert not guard.validate('{"name": "x"}').validation_passed


def test_pii_through_a_real_guard() -> None:
    guard = Guard().use(adapter.WardenPii(entities=["EMAIL_ADDRESS"], on_fail="fix"))
    outcome = guard.validate("mail me at jane.doe@example.com please")
    assert outcome.validated_output == "mail me at <EMAIL_ADDRESS> please"


def test_validator_options_are_validated_like_a_policy_entry() -> None:
    with pytest.raises(ValidationError, match="max_charz"):
        adapter.WardenLength(max_charz=3)
    with pytest.raises(ValidationError):
        adapter.WardenTopic()


def test_direct_validate_gives_metadata_with_score_and_detail() -> None:
    result = adapter.WardenLength(max_chars=2).validate("abc", {})
    assert result.outcome == "fail"
    assert result.fix_value is None  # nothing to mask: the whole text is the problem
    assert result.error_spans is None
    assert result.metadata["score"] == 1.0
    assert result.metadata["detail"]["exceeded"] == ["chars"]


def test_to_validation_result_passes_clean_results() -> None:
    assert adapter.to_validation_result(CheckResult.clean(), "x", "pii").outcome == "pass"


def test_merge_spans_and_redact() -> None:
    spans = [Span(10, 14, "B"), Span(0, 3, "A"), Span(2, 5, "C"), Span(12, 13, "D")]
    assert adapter.merge_spans(spans) == [Span(0, 5, "A"), Span(10, 14, "B")]
    assert adapter.redact("abcdefghijklmnop", spans) == "<A>fghij<B>op"
    assert adapter.redact("abc", []) == "abc"


def test_telemetry_stays_off_after_guard_use_even_if_the_rc_file_enables_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".guardrailsrc").write_text("enable_metrics=true\nuse_remote_inferencing=true\n")
    monkeypatch.setenv("HOME", str(tmp_path))
    guard = Guard().use(adapter.WardenLength(max_chars=100))  # Guard() re-reads ~/.guardrailsrc
    guard.configure(allow_metrics_collection=True)
    guard.validate("hello")
    assert adapter.telemetry_state() == {
        "enable_metrics": False,
        "use_remote_inferencing": False,
        "disable_tracing": True,
        "use_server": False,
        "hub_enabled": True,  # the caller asked explicitly...
        "hub_tracer": False,  # ...but there is no tracer to make spans with
        "hub_exporter": False,
    }
    assert adapter.WardenLength(max_chars=1).use_local is True
    adapter.ensure_offline()
    assert adapter.telemetry_state()["hub_enabled"] is False


NO_NETWORK = """
import json, sys
events = []
# Egress only: asyncio's socketpairs and urllib3's IPv6 probe (bind to ::1) are local.
EGRESS = {"socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "socket.sendto", "socket.sendmsg",
          "http.client.connect"}
sys.addaudithook(lambda ev, args: ev in EGRESS and events.append([ev, str(args)[:200]]))
from policies import guardrails_adapter as adapter
from guardrails import Guard
from guardrails.utils.hub_telemetry_utils import HubTelemetry
guard = Guard().use(adapter.WardenStepVerifier(on_fail="noop"))
guard.validate("200 × 0.8 = 150")
guard.configure(allow_metrics_collection=True)
guard.validate("200 × 0.8 = 160")
hub = HubTelemetry._instance
if hub._tracer_provider is not None:
    hub._tracer_provider.force_flush()
print(json.dumps({"events": events, "state": adapter.telemetry_state()}))
"""


def test_nothing_leaves_the_machine_in_a_fresh_process(tmp_path: Path) -> None:
    # Without the adapter, this script makes guardrails resolve its hub's span collector
    # (an execute-api.amazonaws.com host): guardrails' default is metrics on.
    (tmp_path / ".guardrailsrc").write_text("enable_metrics=true\n")
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", NO_NETWORK], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["events"] == []
    assert report["state"]["enable_metrics"] is False
    assert report["state"]["hub_tracer"] is False
