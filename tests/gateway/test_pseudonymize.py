"""Reversible redaction, piece by piece: placeholders, restoration in a channel, the stream checks
on restored text, and the policy rules for ``action: pseudonymize``."""

from __future__ import annotations

import itertools
import json
import random
import re
from pathlib import Path

import pytest

from audit.record import Stage, Verdict
from gateway.pipeline.pseudonyms import CODE_CHARS, Pseudonyms, Restorer, keyed_hash, placeholder_for
from gateway.pipeline.segments import chat_segments
from gateway.pipeline.session import GuardSession, new_request_id
from gateway.pipeline.stream import ChannelScanner
from policies.compiled import BoundCheck, bind
from policies.loader import load_policy_text
from policies.schema import CheckSpec, Policy

EMAIL = "jane.roe@example.org"
PHONE = "+1 415 555 0132"
SHAPE = re.compile(r"<EMAIL_ADDRESS_[0-9a-f]{4}>")


def table(*pairs: tuple[str, str], tenant: str = "acme") -> Pseudonyms:
    return Pseudonyms.assign(tenant, pairs)


def restore(t: Pseudonyms, pieces: list[str], channel: str = "content", *, as_json: bool = False) -> str:
    r = Restorer(t, channel, json=as_json)
    return "".join(r.feed(p) for p in pieces) + r.feed("", final=True)


# -- placeholders ---------------------------------------------------------------------------


def test_placeholder_keeps_the_type_and_is_the_same_for_the_same_value() -> None:
    first = table(("EMAIL_ADDRESS", EMAIL), ("PHONE_NUMBER", PHONE))
    again = table(("PHONE_NUMBER", PHONE), ("EMAIL_ADDRESS", EMAIL))
    email = first.of("EMAIL_ADDRESS", EMAIL)
    assert email is not None and SHAPE.fullmatch(email.placeholder)
    assert email.placeholder == placeholder_for("acme", "EMAIL_ADDRESS", EMAIL)
    assert [p.placeholder for p in first.items] == [again.of(p.entity, p.value).placeholder for p in first.items]  # type: ignore[union-attr]
    phone = first.of("PHONE_NUMBER", PHONE)
    assert phone is not None and phone.placeholder.startswith("<PHONE_NUMBER_")


def test_placeholders_are_keyed_per_tenant_and_by_the_audit_key(monkeypatch: pytest.MonkeyPatch) -> None:
    assert placeholder_for("acme", "EMAIL_ADDRESS", EMAIL) != placeholder_for("globex", "EMAIL_ADDRESS", EMAIL)
    before = keyed_hash("acme", EMAIL)
    monkeypatch.setenv("WARDEN_AUDIT_KEY", "another-key")
    assert keyed_hash("acme", EMAIL) != before


def _colliding_values() -> tuple[str, str]:
    seen: dict[str, str] = {}
    for i in itertools.count():
        value = f"user{i}@example.com"
        code = keyed_hash("acme", value)[:CODE_CHARS]
        if code in seen:
            return seen[code], value
        seen[code] = value
    raise AssertionError("unreachable")


def test_two_values_sharing_a_code_get_longer_distinct_placeholders() -> None:
    a, b = _colliding_values()
    t = table(("EMAIL_ADDRESS", a), ("EMAIL_ADDRESS", b), ("EMAIL_ADDRESS", EMAIL))
    pa, pb, pe = (t.of("EMAIL_ADDRESS", v) for v in (a, b, EMAIL))
    assert pa and pb and pe
    assert pa.placeholder != pb.placeholder
    assert len(pa.placeholder) > len(pe.placeholder) == len("<EMAIL_ADDRESS_0000>")
    assert restore(t, [f"{pa.placeholder} {pb.placeholder}"]) == f"{a} {b}"


# -- restoration in one channel ---------------------------------------------------------------


@pytest.mark.parametrize("seed", range(12))
def test_a_placeholder_split_anywhere_is_restored_whole(seed: int) -> None:
    t = table(("EMAIL_ADDRESS", EMAIL))
    ph = t.items[0].placeholder
    text = f"Dear {ph}, the invoice is paid.<{ph}>"
    rng = random.Random(seed)
    pieces, i = [], 0
    while i < len(text):
        n = rng.randint(1, 5)
        pieces.append(text[i : i + n])
        i += n
    r = Restorer(t, "content")
    released = [r.feed(p) for p in pieces] + [r.feed("", final=True)]
    assert "".join(released) == f"Dear {EMAIL}, the invoice is paid.<{EMAIL}>"
    assert not any("<EMAIL" in piece for piece in released)  # never a fragment of the placeholder


def test_one_character_per_chunk_and_ordinary_text_does_not_wait() -> None:
    t = table(("EMAIL_ADDRESS", EMAIL))
    ph = t.items[0].placeholder
    r = Restorer(t, "content")
    assert r.feed("a < b and x<y ") == "a < b and x<y "  # no placeholder could start here
    released = [r.feed(c) for c in ph]
    assert released[:-1] == [""] * (len(ph) - 1) and released[-1] == EMAIL


def test_placeholder_like_text_that_maps_to_nothing_passes_unchanged() -> None:
    t = table(("EMAIL_ADDRESS", EMAIL))
    ph = t.items[0].placeholder
    other = placeholder_for("globex", "EMAIL_ADDRESS", EMAIL)  # another tenant's for the same value
    text = f"{other} <EMAIL_ADDRESS> <PHONE_NUMBER_{ph[-5:-1]}> {ph[:-1]}"
    assert restore(t, list(text)) == text
    assert t.summary()["restored"] == []


def test_hex_in_upper_case_is_restored_too() -> None:
    t = table(("EMAIL_ADDRESS", EMAIL))
    ph = t.items[0].placeholder
    assert restore(t, [ph[:-5], ph[-5:].upper()]) == EMAIL


def test_tool_call_arguments_stay_json() -> None:
    quoted = 'He said "hi"\\now'
    t = table(("EMAIL_ADDRESS", EMAIL), ("QUOTE", quoted))
    e, q = (t.of(k, v) for k, v in (("EMAIL_ADDRESS", EMAIL), ("QUOTE", quoted)))
    assert e and q
    args = json.dumps({"to": e.placeholder, "body": q.placeholder})
    restored = restore(t, list(args), "tool_call", as_json=True)
    assert json.loads(restored) == {"to": EMAIL, "body": quoted}


def test_the_summary_names_placeholders_and_fingerprints_only() -> None:
    t = table(("EMAIL_ADDRESS", EMAIL), ("PHONE_NUMBER", PHONE))
    e = t.items[0].placeholder
    restore(t, [f"{e} and {e}"], "reasoning")
    summary = t.summary()
    assert EMAIL not in json.dumps(summary) and PHONE not in json.dumps(summary)
    (entry,) = summary["restored"]
    assert entry["placeholder"] == e and entry["count"] == 2 and entry["channels"] == ["reasoning"]
    assert len(entry["fingerprint"]) == 32
    assert summary["not_restored"] == [t.items[1].placeholder]


# -- the stream checks read the restored text ---------------------------------------------------


def pii(**extra: object) -> BoundCheck:
    spec = CheckSpec.model_validate({"check": "pii", "entities": ["EMAIL_ADDRESS"], "action": "redact", **extra})
    return bind(Policy(name="t"), spec)


def scanner(t: Pseudonyms, *checks: BoundCheck, holdback: int = 64) -> ChannelScanner:
    return ChannelScanner(list(checks), holdback, restorer=Restorer(t, "content"), exempt=t.covers)


def stream(s: ChannelScanner, text: str) -> tuple[str, list[str]]:
    released = [s.feed(c).text for c in text] + [s.feed("", final=True).text]
    return "".join(released), released


def test_restored_value_is_not_re_redacted_but_the_models_own_is() -> None:
    t = table(("EMAIL_ADDRESS", EMAIL))
    ph = t.items[0].placeholder
    out, _ = stream(scanner(t, pii()), f"Dear {ph}, copy bob.new@example.net please.")
    assert out == f"Dear {EMAIL}, copy <EMAIL_ADDRESS> please."
    assert t.exempted >= 1


def test_check_restored_makes_the_stream_check_act_on_restored_values() -> None:
    t = table(("EMAIL_ADDRESS", EMAIL))
    ph = t.items[0].placeholder
    out, released = stream(scanner(t, pii(check_restored=True)), f"Dear {ph}, hi.")
    assert out == "Dear <EMAIL_ADDRESS>, hi."
    assert not any(frag in "".join(released) for frag in ("jane", "roe@", "example.org"))


def test_a_restored_value_longer_than_the_window_is_not_forced_out() -> None:
    long_value = "jane.roe.of.the.finance.department.team@accounts-payable.example.org"
    t = table(("EMAIL_ADDRESS", long_value))
    ph = t.items[0].placeholder
    out, _ = stream(scanner(t, pii(), holdback=16), f"To {ph} today.")
    assert out == f"To {long_value} today."


def test_without_pseudonyms_the_scanner_is_unchanged() -> None:
    s = ChannelScanner([pii()], 64)
    out, _ = stream(s, f"Dear {EMAIL}, hi.")
    assert out == "Dear <EMAIL_ADDRESS>, hi."


# -- the policy rules ------------------------------------------------------------------------------


def test_pseudonymize_is_an_input_action() -> None:
    policy = load_policy_text(
        "name: p\ninput:\n  - {check: pii, entities: [EMAIL_ADDRESS], action: pseudonymize}\n"
        "  - {check: secrets, action: pseudonymize}\n"
        "stream:\n  checks:\n    - {check: pii, entities: [EMAIL_ADDRESS], action: redact, check_restored: true}\n",
        "p.yaml",
    )
    assert [b.action.value for b in policy.input] == ["pseudonymize", "pseudonymize"]
    assert policy.stream[0].spec.check_restored


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "name: p\nstream:\n  checks:\n    - {check: pii, action: pseudonymize}\n",
            "'pseudonymize' applies to input checks only",
        ),
        ("name: p\noutput:\n  - {check: secrets, action: pseudonymize}\n", "'pseudonymize' applies to input checks"),
        ("name: p\ninput:\n  - {check: toxicity, action: pseudonymize}\n", "needs a check that finds values"),
        ("name: p\ninput:\n  - {check: pii, action: redact, check_restored: true}\n", "'check_restored' applies"),
    ],
)
def test_misplaced_pseudonymize_is_a_clear_error(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_policy_text(text, "p.yaml")


def test_the_stream_benchmark_measures_pseudonymization_and_checks_it(tmp_path: Path) -> None:
    from benchmarks import stream_checks

    out = tmp_path / "stream_checks.json"
    assert stream_checks.main(["--seconds", "0.01", "--output", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert {(r["workload"], r["chunking"]) for r in rows} >= {("mixed", "word"), ("sensitive", "char")}
    assert all(r["pseudonymized_ok"] and r["pseudonymized_us"] > 0 for r in rows)


# -- the input stage, driven directly ---------------------------------------------------------


def session_for(policy_text: str, tenant: str = "acme") -> GuardSession:
    policy = load_policy_text(policy_text, "p.yaml")
    return GuardSession.start(
        policy,
        request_id=new_request_id(),
        tenant=tenant,
        key_id="k",
        endpoint="/v1/chat/completions",
        model="m",
        stream=False,
    )


PSEUDO_POLICY = """
name: p
input:
  - {check: pii, entities: [EMAIL_ADDRESS], action: pseudonymize, roles: [user, tool]}
  - {check: secrets, action: redact}
"""


async def test_the_input_stage_writes_placeholders_only_where_the_check_reads() -> None:
    session = session_for(PSEUDO_POLICY)
    key = "sk-proj-AbCdEf1234567890GhIjKlMnOpQrStUvWx"
    body = {
        "messages": [
            {"role": "system", "content": f"Support desk of {EMAIL}."},  # not a role this check reads
            {"role": "user", "content": f"Mail {EMAIL} with key {key}"},
            {"role": "tool", "tool_call_id": "c1", "content": json.dumps({"owner": EMAIL})},
        ]
    }
    await session.check_input(chat_segments(body), constrain=None)
    ph = placeholder_for("acme", "EMAIL_ADDRESS", EMAIL)
    messages = body["messages"]
    assert messages[0]["content"] == f"Support desk of {EMAIL}."
    assert messages[1]["content"] == f"Mail {ph} with key <SECRET>"
    assert json.loads(messages[2]["content"]) == {"owner": ph}
    # the record keeps the placeholder wherever the value stood, and never the secret
    assert session.record.input_text is not None and EMAIL not in session.record.input_text
    assert key not in session.record.input_text
    step = next(s for s in session.record.steps if s.name == "pseudonymize")
    assert step.detail == {"placeholders": [ph]} and {s.entity_type for s in step.spans} == {ph[1:-1]}


async def test_monitor_mode_leaves_the_values_and_records_what_enforce_would_do() -> None:
    session = session_for(PSEUDO_POLICY.replace("name: p", "name: p\nmode: monitor"))
    body = {"messages": [{"role": "user", "content": f"Mail {EMAIL}"}]}
    await session.check_input(chat_segments(body), constrain=None)
    assert body["messages"][0]["content"] == f"Mail {EMAIL}"
    assert session.pseudonyms is None
    pii_step = session.record.steps[0]
    assert pii_step.verdict is Verdict.redact and not pii_step.enforced
    assert pii_step.detail["action"] == "pseudonymize"
    assert session.record.input_text == "Mail <EMAIL_ADDRESS>"


async def test_what_checks_say_about_the_answer_is_recorded_with_placeholders() -> None:
    session = session_for(PSEUDO_POLICY)
    body = {"messages": [{"role": "user", "content": f"Mail {EMAIL}"}]}
    await session.check_input(chat_segments(body), constrain=None)
    ph = placeholder_for("acme", "EMAIL_ADDRESS", EMAIL)
    # a check's detail or an error quoting the restored answer (schema errors, claims, upstream text)
    step = session.add_step(Stage.output, "quoting", Verdict.flag, detail={"errors": [f"{EMAIL!r} is bad"]})
    assert step.detail == {"errors": [f"{ph!r} is bad"]}
    record = session.finish(error=f"upstream said: unknown {EMAIL}")
    assert record.error == f"upstream said: unknown {ph}"
