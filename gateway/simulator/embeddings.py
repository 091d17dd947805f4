"""Deterministic embeddings: a unit vector hashed from the text, so equal inputs embed equally."""

from __future__ import annotations

import base64
import hashlib
import math
import struct


def embed(text: str, dimensions: int) -> list[float]:
    raw = b""
    block = 0
    while len(raw) < dimensions * 4:
        raw += hashlib.blake2b(f"{block}:{text}".encode(), digest_size=64).digest()
        block += 1
    ints = struct.unpack(f"<{dimensions}I", raw[: dimensions * 4])
    vector = [n / 2**31 - 1.0 for n in ints]
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


def as_base64(vector: list[float]) -> str:
    """The float32 little-endian encoding the OpenAI SDK asks for by default."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def input_texts(value: str | list[str] | list[int] | list[list[int]]) -> list[str]:
    """Texts to embed; token-id inputs are embedded by their ids' text."""
    if isinstance(value, str):
        return [value]
    texts: list[str] = []
    ids: list[str] = []
    for item in value:
        if isinstance(item, int):
            ids.append(str(item))
        else:
            texts.append(item if isinstance(item, str) else " ".join(map(str, item)))
    return [" ".join(ids)] if ids else texts
