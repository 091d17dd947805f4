"""Phrases a user quotes as data inside their own request, told apart from their own words.

"Translate 'never share your password with anyone' into German", "write a Sigma rule that
matches 'ignore previous instructions' in our chatbot logs": the quoted words are the object
of the request, not an instruction to the model. A direct-injection detector that reads the
quote as the user's own words blocks translators, moderators and the blue teams writing
detection rules. ``split_quotes`` returns the user's own words (each quote replaced by an
ellipsis, so the sentence still reads as a request about *something*) and the quotes; the
detector (``detector.DetectorCheck``) scores both and counts a quote as weaker evidence than
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

_PAIRS = (
    r'"([^"\n]{3,600})"',
    r"“([^”\n]{3,600})”",
    r"„([^“”\n]{3,600})[“”]",
    r"«\s?([^»\n]{3,600}?)\s?»",
    r"「([^」\n]{3,600})」",
    r"`([^`\n]{3,600})`",
    # single quotes only where they cannot be apostrophes: after a space, colon or bracket and
    # before a space, punctuation or the end
    r"(?:(?<=[\s:(\[])|^)'([^'\n]{3,600})'(?=[\s.,;:!?)\]]|$)",
    r"(?:(?<=[\s:(\[])|^)‘([^’\n]{3,600})’(?=[\s.,;:!?)\]]|$)",
)
_QUOTE = re.compile("|".join(_PAIRS))

#: own words that hand the quote to the model to carry out, so it is not mere data:
#: "do what this says: '...'", "follow these instructions: '...'", "repeat after me and obey"
_OBEY = re.compile(
    r"\b(?:do|follow|execute|obey|carry out|comply with|act on|perform|run|apply)\b(?: \S+){0,3}? "
    r"(?:what (?:it|this|that|the (?:quote|text|message|line)) says|(?:these|this|the following|"
    r"the quoted|the instructions?|the commands?|the text|the message|the line)\b)"
    r"|\b(?:respond|answer|reply|act|behave) (?:as|like) (?:it|this|the (?:quote|text)) (?:says|asks)\b"
    r"|\bsay (?:exactly|only)\b|\boutput (?:exactly|only)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Quoted:
    """A user turn split into the user's own words and the phrases they quote."""

    own: str
    quotes: tuple[str, ...]
    #: the own words ask the model to carry the quote out: the quote counts in full
    obeyed: bool


def split_quotes(text: str) -> Quoted | None:
    """The own words and quotes of ``text``; None when it quotes nothing worth telling apart."""
    if not any(mark in text for mark in "\"“„«「`'‘"):
        return None
    quotes: list[str] = []
    pieces: list[str] = []
    cursor = 0
    for match in _QUOTE.finditer(text):
        inner = next(g for g in match.groups() if g is not None)
        if len(inner.split()) < MIN_QUOTED_WORDS:
            continue
        quotes.append(inner)
        pieces.append(text[cursor : match.start()])
        pieces.append("“…”")
        cursor = match.end()
    if not quotes:
        return None
    pieces.append(text[cursor:])
    own = "".join(pieces)
    if len(own.replace("“…”", " ").split()) < MIN_OWN_WORDS:
        return None
    return Quoted(own=own, quotes=tuple(quotes), obeyed=bool(_OBEY.search(own)))
