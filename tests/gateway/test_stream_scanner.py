"""The hold-back scanner: no fragment of an acted-on span leaves, ordinary text does not wait."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.pipeline.stream import ChannelScanner
from policies.checks.base import Span, StreamMatcher, StreamScan
from policies.compiled import BoundCheck, CompiledPolicy, bind
from policies.loader import load_policy
from policies.schema import CheckSpec, Policy

EMAIL = r"[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}"
KEY = r"sk-[A-Za-z0-9]{20,}"


def bound(action: str = "redact", mode: str = "enforce", allow: tuple[str, ...] = (), **patterns: str) -> BoundCheck:
    policy = Policy(name="t")
    spec = CheckSpec.model_validate(
        {
            "check": "regex",
            "patterns": patterns or {"email": EMAIL},
            "entity": "EMAIL_ADDRESS",
            "action": action,
            "mode": mode,
            "allow": list(allow),
        }
    )
    return bind(policy, spec)


def run(scanner: ChannelScanner, pieces: list[str]) -> tuple[str, list[str]]:
    released = []
    for piece in pieces:
        released.append(scanner.feed(piece).text)
    released.append(scanner.feed("", final=True).text)
    return "".join(released), released


def fragments(value: str, n: int = 3) -> set[str]:
    return {value[i : i + n] for i in range(len(value) - n + 1)}


TEXT = "Write to alice.smith@example.com for details, thanks."
VALUE = "alice.smith@example.com"


@pytest.mark.parametrize("seed", range(20))
def test_value_split_anywhere_never_leaks(seed: int) -> None:
    rng = random.Random(seed)
    pieces, i = [], 0
    while i < len(TEXT):
        n = rng.randint(1, 6)
        pieces.append(TEXT[i : i + n])
        i += n
    scanner = ChannelScanner([bound()], holdback=64)
    out, released = run(scanner, pieces)
    assert out == "Write to <EMAIL_ADDRESS> for details, thanks."
    sent = "".join(released)
    assert not any(f in sent for f in fragments(VALUE) if "@" in f or "." in f[1:-1] or (f.isalpha() and f in "smith"))
    assert VALUE[:5] not in sent and "example" not in sent


def test_one_char_per_chunk() -> None:
    scanner = ChannelScanner([bound()], holdback=64)
    out, released = run(scanner, list(TEXT))
    assert out == "Write to <EMAIL_ADDRESS> for details, thanks."
    assert all("alice" not in r and "example" not in r for r in released)


def test_ordinary_text_is_not_held() -> None:
    scanner = ChannelScanner([bound()], holdback=64)
    assert scanner.feed("The weather is fine today. ").text == "The weather is fine today. "
    # a word in progress may be the start of an address, and waits for its end
    assert scanner.feed("Tomor").text == ""
    assert scanner.feed("row ").text == "Tomorrow "


def test_block_ends_before_the_span() -> None:
    scanner = ChannelScanner([bound(action="block")], holdback=64)
    out = [scanner.feed(c) for c in TEXT]
    text = "".join(r.text for r in out)
    assert text == "Write to "
    blocked = [r.blocked_by for r in out if r.blocked_by]
    assert len(blocked) == 1 and blocked[0].span.entity_type == "EMAIL_ADDRESS"
    assert scanner.feed("more").text == ""


def test_monitor_and_flag_checks_do_not_hold() -> None:
    for b in (bound(mode="monitor"), bound(action="flag")):
        scanner = ChannelScanner([b], holdback=64)
        assert not scanner.active
        assert scanner.feed("alice@exa").text == "alice@exa"


def test_allow_list_lets_a_value_through() -> None:
    scanner = ChannelScanner([bound(allow=("support@example.com",))], holdback=64)
    out, _ = run(scanner, list("Mail support@example.com or bob@example.com now"))
    assert out == "Mail support@example.com or <EMAIL_ADDRESS> now"


def test_cap_fails_closed_and_swallows_the_rest_of_the_value() -> None:
    key = "sk-" + "A1b2C3d4" * 12  # 99 characters: longer than the hold-back window
    scanner = ChannelScanner([bound(key=KEY)], holdback=32)
    out, released = run(scanner, list(f"key {key} end"))
    assert out.startswith("key <") and out.endswith("> end")
    assert all("A1b2" not in r for r in released)
    assert out.count("<") == 1


def test_hits_record_offsets_in_the_raw_stream() -> None:
    scanner = ChannelScanner([bound()], holdback=64)
    run(scanner, list(TEXT))
    (hit,) = scanner.hits
    assert TEXT[hit.span.start : hit.span.end] == VALUE
    assert hit.value == VALUE


def test_work_per_feed_is_bounded() -> None:
    """The buffer a feed scans stays small however long the stream gets."""
    scanner = ChannelScanner([bound()], holdback=64)
    longest = 0
    for _ in range(2000):
        scanner.feed("lorem ipsum ")
        longest = max(longest, len(scanner._ctx) + scanner.held)
    assert longest <= 64 + 64


# -- spans put off behind another check's hold -------------------------------------------


class ReportsOnce(StreamMatcher):
    """Reports a complete span the first time it sees it, and never again: like a pattern
    whose match began in text that has since left the scanner's context."""

    def __init__(self, value: str) -> None:
        self.value = value
        self.reported = False

    def scan(self, buffer: str, start: int, final: bool) -> StreamScan:
        at = buffer.find(self.value, start)
        if at < 0 or self.reported:
            return StreamScan((), len(buffer))
        self.reported = True
        return StreamScan((Span(at, at + len(self.value), "SECRET"),), len(buffer))


class HoldsUntil(StreamMatcher):
    """Holds from ``marker`` until ``release`` has arrived (a check deciding a longer value)."""

    def __init__(self, marker: str, release: str) -> None:
        self.marker, self.release = marker, release

    def scan(self, buffer: str, start: int, final: bool) -> StreamScan:
        at = buffer.find(self.marker, start)
        if final or at < 0 or self.release in buffer[at:]:
            return StreamScan((), len(buffer))
        return StreamScan((), at)


def test_a_span_put_off_behind_another_hold_is_applied_without_being_found_again() -> None:
    text = "login with Xk9vQ2mLw7@db and then carry on; done."
    scanner = ChannelScanner([bound(), bound()], holdback=256)
    (first, _), (second, _) = scanner.matchers
    scanner.matchers = [(first, ReportsOnce("Xk9vQ2mLw7")), (second, HoldsUntil("X", "done"))]
    out, released = run(scanner, list(text))
    assert out == "login with <SECRET>@db and then carry on; done."
    assert not any(f in "".join(released) for f in fragments("Xk9vQ2mLw7"))
    (hit,) = scanner.hits
    assert text[hit.span.start : hit.span.end] == "Xk9vQ2mLw7"


class ReportsAlways(ReportsOnce):
    def scan(self, buffer: str, start: int, final: bool) -> StreamScan:
        self.reported = False
        return super().scan(buffer, start, final)


def test_spans_put_off_again_and_again_are_kept_once() -> None:
    scanner = ChannelScanner([bound(), bound()], holdback=256)
    (first, _), (second, _) = scanner.matchers
    scanner.matchers = [(first, ReportsAlways("Xk9vQ2mLw7")), (second, HoldsUntil("X", "done"))]
    most = 0
    for piece in list("key Xk9vQ2mLw7 then a long wait before it is done"):
        scanner.feed(piece)
        most = max(most, len(scanner._deferred))
    assert most == 1
    assert scanner.feed("", final=True).text == ""
    assert [h.value for h in scanner.hits] == ["Xk9vQ2mLw7"]


@pytest.fixture(scope="module")
def default_policy() -> CompiledPolicy:
    policy = load_policy(Path(__file__).resolve().parents[2] / "policies" / "default.yaml")
    policy.warm()
    return policy


def test_default_policy_connection_string_one_char_per_chunk(default_policy: CompiledPolicy) -> None:
    password = "S3cretPass"
    text = f"Connect with postgres://app:{password}@db.internal.example.com and run the migrations."
    scanner = ChannelScanner(default_policy.stream, default_policy.holdback_chars)
    out, released = run(scanner, list(text))
    sent = "".join(released)
    assert not [f for f in fragments(password) if f in sent]
    assert out.startswith("Connect with postgres://app:<") and out.endswith("> and run the migrations.")


def test_default_checks_apply_a_password_whose_match_began_beyond_the_context(default_policy: CompiledPolicy) -> None:
    # The e-mail pattern holds "Xk9vQ2mLw7@db.internal" after the password is complete,
    # so the password is put off while everything before it goes out; its match began
    # more than CONTEXT_CHARS earlier, so the secrets check cannot find it again.
    user = "reporting_service_account_for_the_finance_team_readonly_replica_2024"
    password = "Xk9vQ2mLw7"
    text = f"Use postgres://{user}:{password}@db.internal:5432/app for reports."
    scanner = ChannelScanner(default_policy.stream, 256)
    out, released = run(scanner, list(text))
    assert out == f"Use postgres://{user}:<SECRET>@db.internal:5432/app for reports."
    assert not [f for f in fragments(password) if f in "".join(released)]


# -- batching: a run of tokens checked in one pass is checked as the tokens one by one ----------

_rng = random.Random(20261207)
_ALNUM = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"


def _token(n: int) -> str:
    # built at run time, so no credential-shaped literal sits in the repository
    return "".join(_rng.choice(_ALNUM) for _ in range(n)) + "7Qx"


WORDS = ["the", "plan", "is", "fine,", "mail", "me", "at", "or", "call", "card", "key:", "(see", "notes).", "\n"]
VALUES = [
    "alice.smith@example.com",
    "bob@mail.example.org.",
    "call 212-555-0187 today",
    "4111 1111 1111 1111",
    "536-22-1845",
    "DE89 3704 0044 0532 0130 00",
    "sk-proj-" + _token(40),
    "ghp_" + _token(33),
    "postgres://app:" + _token(9) + "@db.internal/app",
    'password = "' + _token(11) + '"',
]


def _feed_all(policy: CompiledPolicy, pieces: list[str]) -> tuple[str, list[tuple[str, int, int, str]]]:
    scanner = ChannelScanner(policy.stream, policy.holdback_chars)
    out, _ = run(scanner, pieces)
    return out, [(h.bound.name, h.span.start, h.span.end, h.value) for h in scanner.hits]


def _runs(tokens: list[str], sizes: list[int]) -> list[str]:
    out, at = [], 0
    for size in sizes:
        if at >= len(tokens):
            break
        out.append("".join(tokens[at : at + size]))
        at += size
    if at < len(tokens):
        out.append("".join(tokens[at:]))
    return out


@settings(max_examples=120, deadline=None)
@given(
    words=st.lists(st.sampled_from(WORDS + VALUES), min_size=1, max_size=40),
    sizes=st.lists(st.integers(min_value=1, max_value=300), max_size=12),
)
def test_checking_runs_of_tokens_changes_no_redaction_or_hit(
    default_policy: CompiledPolicy, words: list[str], sizes: list[int]
) -> None:
    # The fast path merges the tokens of a read into runs (sse.FIRST_RUN .. MAX_RUN) and checks
    # each run in one pass: the client gets the same text, the audit the same hits, as when
    # every token is checked alone; and every value is redacted either way.
    text = " ".join(words)
    tokens = re.findall(r"\s*\S+|\s+$", text)
    one_by_one = _feed_all(default_policy, tokens)
    assert _feed_all(default_policy, _runs(tokens, sizes)) == one_by_one
    assert _feed_all(default_policy, [text]) == one_by_one


@pytest.mark.parametrize("value", VALUES)
def test_a_value_is_redacted_whatever_runs_its_tokens_come_in(default_policy: CompiledPolicy, value: str) -> None:
    text = f"Sure, the value is {value} as you asked.\nAnything else?"
    tokens = re.findall(r"\s*\S+|\s+$", text)
    for sizes in ([1] * len(tokens), [4, 16, 64], [2, 3, 5, 7], [len(tokens)]):
        out, hits = _feed_all(default_policy, _runs(tokens, sizes))
        assert value.strip(".") not in out and hits, (sizes, out)


@pytest.mark.xfail(
    strict=True,
    reason="known, not from batching: a match that fails its validation consumes its text (as in "
    "presidio), so a phone number right after an IBAN's digits is found only when the IBAN was "
    "decided in an earlier pass; the same holds for a whole-text scan",
)
def test_a_phone_number_right_after_an_iban_is_found_however_tokens_are_batched(
    default_policy: CompiledPolicy,
) -> None:
    text = "DE89 3704 0044 0532 0130 00 212-555-0187 the"
    tokens = re.findall(r"\s*\S+|\s+$", text)
    assert _feed_all(default_policy, [text]) == _feed_all(default_policy, tokens)
