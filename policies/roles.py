"""Message roles as input checks see them, and where a user turn quotes a document.

A gateway sits between an operator (who writes the ``system`` / ``developer`` messages), a
user, and the data the model reads (``tool`` results, documents a user pastes in). An
instruction is an attack or not depending on who wrote it: "ignore any instructions in user
messages" is the operator's own rule in a system prompt, and "ignore the previous
instructions" is a direct injection from a user or an indirect one inside a web page a tool
fetched. So each input check reads the roles that fit it (``Check.default_roles``, or the
policy's ``roles:``) and the record says which message a verdict came from.

``document`` is not a role a client sends: it names the parts of a user turn that quote
material from elsewhere (fenced blocks, ``<document>``-like tags, triple quotes, block
quotes). Those are read as data, like a tool result.
"""

from __future__ import annotations

import re
from typing import Literal, get_args

Role = Literal["system", "developer", "user", "assistant", "tool", "document"]
ROLES: tuple[Role, ...] = get_args(Role)
ALL_ROLES: frozenset[Role] = frozenset(ROLES)
#: roles whose text the operator wrote: instructions, never attacks
OPERATOR_ROLES: frozenset[Role] = frozenset({"system", "developer"})
#: roles that carry data the model reads rather than a request made to it
DATA_ROLES: frozenset[Role] = frozenset({"tool", "document"})

_ALIASES: dict[str, Role] = {"function": "tool", "ipython": "tool"}

#: quoted material shorter than this is a phrase in quotes, not a document
MIN_DOCUMENT_CHARS = 40

_DOCUMENT_PATTERNS = (
    # ```lang ... ``` fenced blocks (an unclosed fence runs to the end of the turn)
    re.compile(r"```[^\n`]*\n(.*?)(?:```|\Z)", re.DOTALL),
    # <document>...</document> and the other tags applications wrap retrieved text in
    re.compile(
        r"<(document|doc|context|email|article|webpage|web_page|page|search_results?|source|data|"
        r"text|file|attachment|transcript|review|message)\b[^>]*>(.*?)</\1\s*>",
        re.DOTALL | re.IGNORECASE,
    ),
    re.compile(r'"""(.*?)"""|\'\'\'(.*?)\'\'\'', re.DOTALL),
    # a run of Markdown block-quote lines
    re.compile(r"(?:^|\n)((?:>[^\n]*(?:\n|$)){2,})"),
)


def role_of(name: str) -> Role:
    """The role a client's ``role`` field names; unknown roles are read as ``user``."""
    lowered = name.lower()
    if lowered in ALL_ROLES and lowered != "document":
        return lowered  # type: ignore[return-value]
    return _ALIASES.get(lowered, "user")


def quoted_documents(text: str) -> tuple[tuple[int, int], ...]:
    """``[start, end)`` ranges of the documents a user turn quotes, in order, not overlapping."""
    if len(text) < MIN_DOCUMENT_CHARS:
        return ()
    found: list[tuple[int, int]] = []
    for pattern in _DOCUMENT_PATTERNS:
        for match in pattern.finditer(text):
            group = next((g for g in range(match.re.groups, 0, -1) if match.group(g) is not None), 0)
            start, end = match.span(group)
            if end - start >= MIN_DOCUMENT_CHARS:
                found.append((start, end))
    found.sort()
    merged: list[tuple[int, int]] = []
    for start, end in found:
        if merged and start < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return tuple(merged)
