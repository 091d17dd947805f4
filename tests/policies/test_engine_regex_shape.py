"""What a regex's parse tree promises about its matches (policies/engines/regex_shape.py)."""

from __future__ import annotations

import pytest
import regex

from policies.engines.prefilter import Prefilter
from policies.engines.regex_shape import Shape, shape_of


def test_shape_reads_prefix_required_text_length_and_white_space() -> None:
    shape = shape_of(r"(?<![\w-])sk-[A-Za-z0-9]{20,}(?![\w-])")
    assert shape.prefixes == {"sk-"}
    assert shape.required == ("sk-",)
    assert (shape.min_len, shape.spaceless) == (23, True)
    assert shape.after is not None and "a" not in shape.after and " " in shape.after and "-" not in shape.after
    assert shape.consumable is not None and " " not in shape.consumable
    # Digits are looked up as "0"; a class wider than a few dozen characters ends a prefix.
    assert shape_of(r"\d{3}-\d{4}").prefixes == {"000", "00\x7f", "0\x7f0", "0\x7f\x7f", "\x7f00", "\x7f0\x7f"} | {
        "\x7f\x7f0",
        "\x7f\x7f\x7f",
    }
    assert shape_of(r"[^\s]{24,}").prefixes is None
    # Prefixes that any word has (letters from classes) are not worth a lookup; letters
    # followed by a digit are (an IBAN's country code and check digits).
    random_token, iban = shape_of(r"[A-Za-z0-9]{24,}"), shape_of(r"(?i)(?<![A-Z0-9])[A-Z]{2}[0-9]{2}[A-Z0-9]{8,}")
    assert Prefilter([random_token, iban]).ungated == (0,)


def test_shape_folds_case_as_regex_does() -> None:
    # IGNORECASE lets `s` match "ſ" and `k` match the Kelvin sign: those become DEL.
    prefixes = shape_of(r"(?i)secret").prefixes
    assert prefixes is not None and {"sec", "SeC", "\x7fec"} <= prefixes
    assert "\x7fec" not in (shape_of(r"secret").prefixes or ())


def test_shape_counts_what_a_look_ahead_reads() -> None:
    # A partial match can end inside the look-ahead ("key " waits for "is"), so the
    # pattern is not spaceless although it consumes no space.
    assert not shape_of(r"key(?=\s+is\s)").spaceless
    assert shape_of(r"key(?![\w-])").spaceless


@pytest.mark.parametrize(
    ("pattern", "flags"),
    [
        (r"(?:secret){e<=1}", 0),  # fuzzy matching: the standard parser reads a literal
        (r"[[:digit:]]{9}", 0),  # a POSIX class: the standard parser reads a nested set
        (r"\p{Lu}{4}\d+", 0),  # a Unicode property
        (r"\m\w+@\w+", 0),  # start of word
        (r"(?|(a)|(b))", 0),  # branch reset
        (r"abc", int(regex.V1)),  # a flag the standard parser does not share
    ],
)
def test_shape_promises_nothing_for_syntax_only_regex_knows(pattern: str, flags: int) -> None:
    assert shape_of(pattern, flags) == Shape()
