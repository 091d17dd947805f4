"""The hold-back scanner: no fragment of an acted-on span leaves, ordinary text does not wait."""

from __future__ import annotations

import random

import pytest

from gateway.pipeline.stream import ChannelScanner
from policies.compiled import BoundCheck, bind
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
