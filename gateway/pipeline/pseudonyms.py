"""Reversible redaction: typed, keyed placeholders the model sees instead of the values, and
their restoration in the answer.

An input check with ``action: pseudonymize`` has each value it finds replaced by
``<ENTITY_xxxx>``: the entity type and the first hex characters of
``HMAC-SHA256(tenant key, value)``, where the tenant key is ``HMAC(fingerprint key,
"warden-pseudonym/" + tenant)`` and the fingerprint key comes from ``WARDEN_AUDIT_KEY``
(``audit.keys``). So the same value gets the same placeholder in every turn, on every replica
that shares the audit key, without anything being stored between requests; another tenant's
placeholder for it differs; and nobody without the key can test a guess against a placeholder.

Four hex characters (16 bits) keep placeholders short for the model. Two *different* values of
one type in one request that share a code would make restoration ambiguous, so such a group
(and only it) gets longer codes, four characters at a time, until they differ: a collision
costs that request's consistency with other turns for those values, never a wrong restore.

The table (:class:`Pseudonyms`) lives in the request's session only. A :class:`Restorer` per
answer channel (content, reasoning, each tool call's arguments) puts the values back: a
complete placeholder of this request is replaced, a tail that could still become one is held
back until it is whole or cannot be (so one arriving a character per chunk is restored
whole), and placeholder-like text that maps to nothing here passes unchanged. The stream
checks then see the restored text, exactly as the client will.
"""

from __future__ import annotations

import hmac
import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from audit.fingerprint import fingerprint
from audit.keys import fingerprint_key
from policies.checks.base import Span

#: hex characters of the keyed hash in a placeholder (more only to tell colliding values apart)
CODE_CHARS = 4
_MAX_CODE_CHARS = 64
#: anything shaped like a placeholder; only this request's placeholders are restored
PLACEHOLDER = re.compile(r"<[A-Za-z][A-Za-z0-9_]*_[0-9A-Fa-f]{4,64}>")
_NOT_WORD = re.compile(r"[^A-Za-z0-9_]+")


@lru_cache(maxsize=1024)
def _tenant_key(base: bytes, tenant: str) -> bytes:
    return hmac.digest(base, b"warden-pseudonym/" + tenant.encode("utf-8", "surrogatepass"), "sha256")


def keyed_hash(tenant: str, value: str) -> str:
    """Hex HMAC-SHA256 of ``value`` under the tenant's pseudonym key (all 64 characters)."""
    key = _tenant_key(fingerprint_key(), tenant)
    return hmac.digest(key, value.encode("utf-8", "surrogatepass"), "sha256").hex()


def entity_label(entity: str) -> str:
    """An entity type as a placeholder writes it (letters, digits and ``_``, upper case)."""
    label = _NOT_WORD.sub("_", entity).strip("_").upper() or "VALUE"
    return label if label[0].isalpha() else f"V_{label}"


def placeholder_for(tenant: str, entity: str, value: str, chars: int = CODE_CHARS) -> str:
    return f"<{entity_label(entity)}_{keyed_hash(tenant, value)[:chars]}>"


def _json_inner(value: str) -> str:
    """``value`` as it may stand inside a JSON string: unchanged if it already can (it came from
    JSON text, or needs no escapes), else escaped, so restored tool-call arguments stay JSON."""
    try:
        json.loads(f'"{value}"')
    except ValueError:
        return json.dumps(value, ensure_ascii=False)[1:-1]
    return value


@dataclass(frozen=True, slots=True)
class Pseudonym:
    placeholder: str
    entity: str
    value: str
    #: the value as restored inside JSON (tool-call arguments)
    json_value: str

    @property
    def label(self) -> str:
        """The placeholder without its angle brackets (what a masked span is labelled with)."""
        return self.placeholder[1:-1]


@dataclass(slots=True)
class Pseudonyms:
    """One request's placeholders and the values they stand for. Never stored or shared."""

    tenant: str
    items: list[Pseudonym] = field(default_factory=list)
    _by_key: dict[str, Pseudonym] = field(default_factory=dict)
    _by_value: dict[tuple[str, str], Pseudonym] = field(default_factory=dict)
    _prefixes: frozenset[str] = frozenset()
    _longest: int = 0
    _finder: re.Pattern[str] | None = None
    _finder_map: dict[str, Pseudonym] = field(default_factory=dict)
    #: placeholder -> channel -> how often the answer's placeholder was restored
    restored: dict[str, Counter[str]] = field(default_factory=dict)
    #: answer spans a check left alone because they lie in a restored value
    exempted: int = 0

    @staticmethod
    def assign(tenant: str, found: Iterable[tuple[str, str]]) -> Pseudonyms:
        """The placeholders for ``(entity, value)`` pairs, codes lengthened only where two
        different values of one type would otherwise share one."""
        by_entity: dict[str, list[str]] = {}
        for entity, value in found:
            values = by_entity.setdefault(entity_label(entity), [])
            if value and value not in values:
                values.append(value)
        table = Pseudonyms(tenant)
        for entity, values in by_entity.items():
            digests = {v: keyed_hash(tenant, v) for v in values}
            chars = dict.fromkeys(values, CODE_CHARS)
            while True:
                codes: dict[str, list[str]] = {}
                for v in values:
                    codes.setdefault(digests[v][: chars[v]], []).append(v)
                clashes = [g for g in codes.values() if len(g) > 1 and chars[g[0]] < _MAX_CODE_CHARS]
                if not clashes:  # (a clash at the full 256 bits would be a broken HMAC)
                    break
                for group in clashes:
                    for v in group:
                        chars[v] = min(chars[v] + CODE_CHARS, _MAX_CODE_CHARS)
            for v in values:
                table._add(Pseudonym(f"<{entity}_{digests[v][: chars[v]]}>", entity, v, _json_inner(v)))
        table._index()
        return table

    def _add(self, p: Pseudonym) -> None:
        self.items.append(p)
        self._by_key[p.placeholder.lower()] = p
        self._by_value[(p.entity, p.value)] = p

    def _index(self) -> None:
        self._prefixes = frozenset(p.placeholder.lower()[:n] for p in self.items for n in range(1, len(p.placeholder)))
        self._longest = max((len(p.placeholder) for p in self.items), default=0)
        forms: dict[str, Pseudonym] = {}
        for p in self.items:
            forms.setdefault(p.value, p)
            forms.setdefault(p.json_value, p)
        self._finder_map = forms
        if forms:
            ordered = sorted(forms, key=len, reverse=True)  # longest first: a value inside another
            self._finder = re.compile("|".join(re.escape(v) for v in ordered))

    def __bool__(self) -> bool:
        return bool(self.items)

    def of(self, entity: str, value: str) -> Pseudonym | None:
        return self._by_value.get((entity_label(entity), value))

    def lookup(self, placeholder: str) -> Pseudonym | None:
        """The value a placeholder of *this request* stands for (hex in any case), or None."""
        return self._by_key.get(placeholder.lower())

    def partial_from(self, text: str, start: int) -> int:
        """Where in ``text`` (at or after ``start``) a tail begins that could still grow into one
        of this request's placeholders; ``len(text)`` when none could."""
        lo = max(start, len(text) - self._longest + 1)
        i = text.rfind("<", lo)
        if i >= 0 and text[i:].lower() in self._prefixes:
            return i
        return len(text)

    def covers(self, text: str) -> bool:
        """Whether ``text`` lies inside a value of this request (the client's own)."""
        return bool(text) and any(text in form for form in self._finder_map)

    def spans_in(self, text: str) -> list[Span]:
        """Each occurrence of a value in ``text``, labelled with its placeholder (for storage:
        the audit keeps the placeholder, never the value)."""
        if self._finder is None:
            return []
        return [Span(m.start(), m.end(), self._finder_map[m.group(0)].label) for m in self._finder.finditer(text)]

    def conceal(self, obj: Any) -> Any:
        """``obj`` (a string, or JSON-like data such as a step's detail) with every value of
        this request written as its placeholder: what a check reports about the answer (a
        schema error quoting it, a claim) must not carry the restored value into the record."""
        if self._finder is None:
            return obj
        if isinstance(obj, str):
            return self._finder.sub(lambda m: self._finder_map[m.group(0)].placeholder, obj)
        if isinstance(obj, dict):
            return {k: self.conceal(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [self.conceal(v) for v in obj]
        return obj

    def note_restored(self, p: Pseudonym, channel: str) -> None:
        self.restored.setdefault(p.placeholder, Counter())[channel] += 1

    def summary(self) -> dict[str, Any]:
        """What the audit step of the restoration says: placeholders and fingerprints only."""
        restored = [
            {
                "placeholder": p.placeholder,
                "entity": p.entity,
                "fingerprint": fingerprint(p.value),
                "count": sum(self.restored[p.placeholder].values()),
                "channels": sorted(self.restored[p.placeholder]),
            }
            for p in self.items
            if p.placeholder in self.restored
        ]
        detail: dict[str, Any] = {
            "restored": restored,
            "not_restored": [p.placeholder for p in self.items if p.placeholder not in self.restored],
        }
        if self.exempted:
            detail["exempt_spans"] = self.exempted
        return detail


@dataclass(slots=True)
class Restorer:
    """Puts this request's values back into one answer channel, holding back a tail that may
    still become a placeholder. Per channel, per request."""

    table: Pseudonyms
    channel: str
    #: tool-call arguments: restore values escaped as JSON string content where needed
    json: bool = False
    _tail: str = ""

    def feed(self, text: str, final: bool = False) -> str:
        if not self._tail and "<" not in text:
            return text
        buf, self._tail = self._tail + text, ""
        out: list[str] = []
        cursor = 0
        for m in PLACEHOLDER.finditer(buf):
            p = self.table.lookup(m.group(0))
            if p is None:
                continue
            out.append(buf[cursor : m.start()])
            out.append(p.json_value if self.json else p.value)
            cursor = m.end()
            self.table.note_restored(p, self.channel)
        if not final:
            keep = self.table.partial_from(buf, cursor)
            self._tail = buf[keep:]
            buf = buf[:keep]
        out.append(buf[cursor:])
        return "".join(out)
