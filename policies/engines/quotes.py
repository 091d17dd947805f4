"""Phrases a user quotes as data inside their own request, told apart from their own words.

"Translate 'never share your password with anyone' into German", "write a Sigma rule that
matches 'ignore previous instructions' in our chatbot logs": the quoted words are the object
of the request, not an instruction to the model. A direct-injection detector that reads the
quote as the user's own words blocks translators, moderators and the blue teams writing
detection rules. ``split_quotes`` returns the user's own words (each quote replaced by an
ellipsis, so the sentence still reads as a request about *something*) and the quotes; the
detector (``policies.checks.detector.DetectorCheck``) scores both and counts a quote as weaker evidence than
the user's own words, unless those words ask the model to carry the quote out.

Longer quoted material (fenced blocks, ``<document>`` tags, block quotes) is a ``document``
(``policies.roles``) and goes to ``indirect_injection`` instead; this module is about the
short quotes inside one sentence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: fewer words than this inside quotes is a term in quotes ("the 'admin' role"), not a quote
MIN_QUOTED_WORDS = 3
#: own words shorter than this are no request of their own: a text that is all quote is
#: judged as a whole, so wrapping an attack in quotation marks does not hide it
MIN_OWN_WORDS = 1

#: (opening characters, pattern): a pattern runs only on a text that holds its opening character
_PAIRS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (opening, re.compile(pattern))
    for opening, pattern in (
        ('"', r'"([^"\n]{3,600})"'),
        ("“", r"“([^”\n]{3,600})”"),
        ("„", r"„([^“”\n]{3,600})[“”]"),
        ("«", r"«\s?([^»\n]{3,600}?)\s?»"),
        ("「", r"「([^」\n]{3,600})」"),
        ("`", r"`([^`\n]{3,600})`"),
    )
)

_BEFORE_OPENING = frozenset(" \t\n:([")
_AFTER_CLOSING = frozenset(" \t\n.,;:!?)]")

#: own words that hand the quote to the model to carry out, so it is not mere data:
#: "do what this says: '...'", "follow these instructions: '...'", "say exactly '...'".
#: Matched only where one of the verbs stands: one search pattern scanned at every word
#: boundary cost a millisecond per 1,000 characters.
_HAND_OVER = {
    **dict.fromkeys(
        ("do", "follow", "execute", "obey", "carry", "comply", "act", "perform", "run", "apply"),
        re.compile(
            r"(?: out| with| on)?(?: \S+){0,3}? (?:what (?:it|this|that|the (?:quote|text|message|line)) says|"
            r"(?:these|this|the following|the quoted|the instructions?|the commands?|the text|the message|"
            r"the line)\b)"
        ),
    ),
    **dict.fromkeys(
        ("respond", "answer", "reply", "behave"),
        re.compile(r" (?:as|like) (?:it|this|the (?:quote|text)) (?:says|asks)\b"),
    ),
    **dict.fromkeys(("say", "output"), re.compile(r" (?:exactly|only)\b")),
}


def _obeys(own: str) -> bool:
    low = own.lower()
    verbs = _HAND_OVER.keys() & {w.strip(".,;:!?()\"'") for w in low.split()}
    for verb in verbs:
        follows = _HAND_OVER[verb]
        start = low.find(verb)
        while start != -1:
            end = start + len(verb)
            whole = (start == 0 or not low[start - 1].isalnum()) and (end == len(low) or not low[end].isalnum())
            if whole and follows.match(low, end):
                return True
            start = low.find(verb, end)
    return False


@dataclass(frozen=True, slots=True)
class Quoted:
    """A user turn split into the user's own words and the phrases they quote."""

    own: str
    quotes: tuple[str, ...]
    #: the own words ask the model to carry the quote out: the quote counts in full
    obeyed: bool


def _single_quoted(text: str, opening: str, closing: str) -> list[tuple[int, int, str]]:
    """Single-quoted phrases, where the quote marks cannot be apostrophes: the opening one after
    a space, colon or bracket (or at the start), the closing one before a space, punctuation or
    the end. A scan over the marks: a regular expression with look-arounds at every position
    cost as much as the classifier."""
    out = []
    start = text.find(opening)
    while start != -1:
        end = text.find(closing, start + 1)
        if end == -1:
            break
        before_ok = start == 0 or text[start - 1] in _BEFORE_OPENING
        after_ok = end + 1 == len(text) or text[end + 1] in _AFTER_CLOSING
        inner = text[start + 1 : end]
        if before_ok and after_ok and "\n" not in inner and 3 <= len(inner) <= 600:
            if len(inner.split()) >= MIN_QUOTED_WORDS:
                out.append((start, end + 1, inner))
            start = text.find(opening, end + 1)
        else:
            # an apostrophe: the next candidate opening mark is the next mark after it
            start = text.find(opening, start + 1)
    return out


def split_quotes(text: str) -> Quoted | None:
    """The own words and quotes of ``text``; None when it quotes nothing worth telling apart."""
    found: list[tuple[int, int, str]] = []
    for opening, pattern in _PAIRS:
        if opening in text:
            for match in pattern.finditer(text):
                if len(match.group(1).split()) >= MIN_QUOTED_WORDS:
                    found.append((match.start(), match.end(), match.group(1)))
    for opening, closing in (("'", "'"), ("‘", "’")):
        found += _single_quoted(text, opening, closing)
    if not found:
        return None
    quotes: list[str] = []
    pieces: list[str] = []
    cursor = 0
    for start, end, inner in sorted(found):
        if start < cursor:  # inside a quote already taken ("he said 'stop it now' twice")
            continue
        quotes.append(inner)
        pieces.append(text[cursor:start])
        pieces.append("“…”")
        cursor = end
    pieces.append(text[cursor:])
    own = "".join(pieces)
    if len(own.replace("“…”", " ").split()) < MIN_OWN_WORDS:
        return None
    return Quoted(own=own, quotes=tuple(quotes), obeyed=_obeys(own))
