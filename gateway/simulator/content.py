"""The simulator's default texts: deterministic, friendly, and free of anything a check would flag."""

from __future__ import annotations

import re
from typing import Any

from gateway.simulator.text import snippet

_TOKENS_IN_NAME = re.compile(r"tokens-(\d+)")
_FILLER_TEXT = (
    "the simulated model streams this steady sentence so that benchmarks measure the gateway "
    "and not the upstream while every word arrives as one token"
)
_FILLER = tuple(_FILLER_TEXT.split())
_MAX_SCHEMA_DEPTH = 6


def tokens_from_model(model: str) -> int | None:
    """200 for a model named like `sim-tokens-200`, else None."""
    found = _TOKENS_IN_NAME.search(model)
    return int(found.group(1)) if found else None


def filler(count: int) -> str:
    """Exactly `count` word tokens."""
    return " ".join(_FILLER[i % len(_FILLER)] for i in range(count))


def answer(model: str, last_user: str) -> str:
    if not last_user.strip():
        return "Hello! I am the Warden simulator. How can I help you today?"
    return (
        f'Thanks for your message: "{snippet(last_user)}". This is a short, friendly reply from '
        f"the simulated model {model}, and I am happy to help with anything else."
    )


def reasoning_steps(last_user: str) -> str:
    """Numbered steps with one arithmetic claim that is true, so step verifiers pass it."""
    words = len(last_user.split())
    return (
        f'Step 1: Read the question: "{snippet(last_user, 40)}".\n'
        f"Step 2: It has {words} words, and {words} × 2 = {words * 2}.\n"
        "Step 3: Write a short, friendly answer.\n"
    )


def example_for_schema(schema: dict[str, Any], depth: int = 0) -> Any:
    """A small value that satisfies the common JSON-schema shapes (not $ref or patterns)."""
    if depth > _MAX_SCHEMA_DEPTH:
        return None
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return example_for_schema(schema[key][0], depth + 1)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        properties: dict[str, Any] = schema.get("properties", {})
        return {name: example_for_schema(sub, depth + 1) for name, sub in properties.items()}
    if kind == "array":
        return [example_for_schema(schema.get("items", {}), depth + 1)]
    simple: dict[str, Any] = {"string": "example", "integer": 1, "number": 1.5, "boolean": True}
    return simple.get(kind)
