"""Hypothesis on the parsers that take untrusted input: the policy loader, the upstream SSE
reader and the stream scanner. A few thousand generated cases in all, in seconds.

* policy loader: any text, and any YAML built from the schema's own keys with random
  values, either loads or raises ``YamlModelError`` (never another exception, never a hang);
* SSE reader: a valid stream cut into random pieces gives back exactly the text that was
  sent and ends once, whatever the cuts; random bytes end in ``UpstreamError`` or nothing,
  never another exception;
* stream scanner: text with e-mail addresses at random places, released in random pieces,
  comes out with every address redacted and every other character kept, and no released
  piece carries an address whole or in part.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from gateway.errors import UpstreamError
from gateway.pipeline.stream import ChannelScanner
from gateway.upstream.sse import SseBatcher
from policies.loader import load_policy_text
from policies.yamlio import YamlModelError
from tests.gateway.test_stream_scanner import bound

FUZZ = settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))

# -- policy loader -------------------------------------------------------------------------

KEYS = ["name", "mode", "on_error", "on_block", "refusal_text", "constrain", "input", "stream", "output",
        "reasoning", "audit", "check", "action", "entities", "patterns", "terms", "threshold", "allow",
        "timeout_ms", "holdback_chars", "checks", "store_text", "system_prompt", "validator", "args",
        "roles"]  # fmt: skip
CHECKS = ["pii", "secrets", "regex", "deny_terms", "length", "topic", "json_schema", "step_verifier", "nope"]
ACTIONS = ["allow", "flag", "redact", "block", "explode"]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(CHECKS + ACTIONS + ["enforce", "monitor", "redacted", "full", "[", "re:(", "*"]),
)
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), inner, max_size=5),
    ),
    max_leaves=25,
)


def _dump(doc: Any) -> str:
    import io

    out = io.StringIO()
    YAML(typ="safe").dump(doc, out)
    return out.getvalue()


@settings(FUZZ, max_examples=250)
@given(doc=st.dictionaries(st.sampled_from(KEYS), documents, max_size=8))
def test_policy_loader_accepts_or_explains_any_structure(doc: dict[str, Any]) -> None:
    doc.setdefault("name", "fuzzed")
    try:
        policy = load_policy_text(_dump(doc), "fuzz.yaml")
    except YamlModelError as exc:
        errors = exc.errors
        assert errors and all(str(e) for e in errors)
    else:
        assert policy.name and policy.version


@FUZZ
@given(text=st.text(max_size=300))
def test_policy_loader_accepts_or_explains_any_text(text: str) -> None:
    try:
        load_policy_text(text, "fuzz.yaml")
    except YamlModelError as exc:
        errors = exc.errors
        assert errors


# -- SSE reader ----------------------------------------------------------------------------


def _sse(contents: list[str], crlf: bool) -> bytes:
    events = []
    for i, text in enumerate(contents):
        chunk = {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [
                {"index": 0, "delta": {"content": text}, "finish_reason": "stop" if i == len(contents) - 1 else None}
            ],
        }
        events.append(b"data: " + orjson.dumps(chunk) + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    raw = b"".join(events)
    return raw.replace(b"\n", b"\r\n") if crlf else raw


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in [*points, len(data)]:
        pieces.append(data[last:p])
        last = p
    return pieces


def _texts(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))


@settings(FUZZ, max_examples=600)
@given(
    contents=st.lists(st.text(max_size=12), min_size=1, max_size=30),
    cuts=st.lists(st.integers(0, 10_000), max_size=40),
    crlf=st.booleans(),
)
def test_sse_reader_gives_back_the_stream_whatever_the_cuts(contents: list[str], cuts: list[int], crlf: bool) -> None:
    reader = SseBatcher()
    out: list[dict[str, Any]] = []
    for piece in _split(_sse(contents, crlf), cuts):
        out.extend(reader.feed(piece))
    assert reader.error is None
    assert reader.done
    assert _texts(out) == "".join(contents)


@settings(FUZZ, max_examples=600)
@given(data=st.lists(st.one_of(st.binary(max_size=64), st.sampled_from([b"data: ", b"\n\n", b"{", b"[DONE]", b"\r\n"])),
                     max_size=30))  # fmt: skip
def test_sse_reader_survives_any_bytes(data: list[bytes]) -> None:
    reader = SseBatcher()
    for piece in data:
        for chunk in reader.feed(piece):
            assert isinstance(chunk, dict)
        if reader.error is not None:
            assert isinstance(reader.error, UpstreamError)
            break


# -- stream scanner ------------------------------------------------------------------------

words = st.text(alphabet="abcdefghij klmnopqrstuvwxyz,.!?", min_size=0, max_size=20)
emails = st.builds(
    lambda user, host, tld: f"{user}@{host}.{tld}",
    st.text(alphabet="0123456789ABCDEFGHJK", min_size=3, max_size=12),
    st.text(alphabet="0123456789ABCDEFGHJK", min_size=2, max_size=10),
    st.sampled_from(["com", "org", "io", "example"]),
)


@settings(FUZZ, max_examples=500)
@given(
    parts=st.lists(st.tuples(words, emails), min_size=1, max_size=5),
    tail=words,
    sizes=st.lists(st.integers(1, 9), min_size=1, max_size=50),
)
def test_stream_scanner_never_leaks_an_address(parts: list[tuple[str, str]], tail: str, sizes: list[int]) -> None:
    text = "".join(f"{before} {email} " for before, email in parts) + tail
    expected = "".join(f"{before} <EMAIL_ADDRESS> " for before, _ in parts) + tail
    pieces, i, n = [], 0, 0
    while i < len(text):
        size = sizes[n % len(sizes)]
        pieces.append(text[i : i + size])
        i, n = i + size, n + 1
    scanner = ChannelScanner([bound()], holdback=64)
    released = [scanner.feed(p).text for p in pieces]
    released.append(scanner.feed("", final=True).text)
    assert "".join(released) == expected
    # nothing of an address leaves: its characters (upper case and digits) never appear
    # outside the placeholder in any released piece
    leaked = [r for r in released if re.search(r"[0-9A-K@]", r.replace("<EMAIL_ADDRESS>", ""))]
    assert leaked == []
