"""Text helpers: the simulator's notion of a token (a word with its trailing space) and chunking."""

from __future__ import annotations

import re

from gateway.simulator.schema import Chunking

_WORD = re.compile(r"\S+\s*|\s+")
ARGUMENT_PIECE_CHARS = 8
"""Tool-call arguments are compact JSON with few spaces; word chunking cuts them this size instead."""


def split_words(text: str) -> list[str]:
    """Word tokens whose concatenation is exactly `text`."""
    return _WORD.findall(text)


def count_tokens(text: str) -> int:
    return len(split_words(text))


def fixed_pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def chunk_text(text: str, chunking: Chunking) -> list[str]:
    """The deltas `text` streams in; never empty pieces, and none at all for empty text."""
    if not text:
        return []
    if chunking == "word":
        return split_words(text)
    if chunking == "char":
        return list(text)
    if chunking == "whole":
        return [text]
    return fixed_pieces(text, chunking)


def chunk_arguments(arguments: str, chunking: Chunking) -> list[str]:
    if chunking == "word":
        return fixed_pieces(arguments, ARGUMENT_PIECE_CHARS)
    return chunk_text(arguments, chunking)


def limit(text: str, stop: list[str], max_tokens: int | None) -> tuple[str, str | None]:
    """Cut `text` at the first stop string, then at `max_tokens`; the finish reason a cut implies."""
    finish: str | None = None
    cuts = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    if cuts:
        text, finish = text[: min(cuts)], "stop"
    if max_tokens is not None:
        words = split_words(text)
        if len(words) > max_tokens:
            text, finish = "".join(words[:max_tokens]), "length"
    return text, finish


def snippet(text: str, width: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1].rstrip() + "…"
