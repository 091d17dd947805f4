"""Proposed policy changes from reviewers' rulings: narrow ``allow`` entries first, a threshold last.

For a check whose firings reviewers called false positives, the narrowest change that fixes them:

* a check that marks spans (``pii``, ``secrets``, ...): allow the flagged value itself, when
  the stored text still holds it (``store_text: full``) and no confirmed firing had it;
* a check that judges the whole text (the detectors): allow the sentence of the ruled text that
  holds the evidence that decided (the top n-grams in the step's ``detail.evidence``; the first
  sentence on records written before evidence was kept), capped at ``MAX_ALLOW_CHARS``; an
  entry that occurs in any known attack (confirmed rulings, the regression set) is widened to
  the whole text or dropped, so an allow entry never covers a known attack;
* only when no allow entry can be built (no stored text, or every wording of it occurs in a
  known attack) and the check has a
  ``threshold``: the midpoint between the false positives' highest score and the confirmed
  firings' lowest, a global change that the regression evaluation then has to clear.

When every false positive came from one API key, one tenant or (input checks) one message
role, the allow entries are proposed as an *exception* scoped to what they share (``exceptions:``
on the check entry, ``policies.schema.CheckException``): narrower than the same entries for every
request. A threshold is never scoped (the schema has no scoped threshold), and an exception
without allow entries (every firing in the scope) is never proposed: it would let every known
attack through from that scope.

Proposals are suggestions, never applied on their own: ``apply`` edits the policy YAML (keeping
its comments and layout) for the editor, where the evaluation and replay show the effect.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import regex
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from dashboard.data import RuledStep
from dashboard.highlight import PLACEHOLDER
from policies.registry import check_class

MAX_ALLOW_CHARS = 80
MIN_ALLOW_CHARS = 8
_SENTENCE = regex.compile(r"[^.!?\n]+[.!?]?")
_SPACE = regex.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class Proposal:
    check: str
    stage: str
    kind: Literal["threshold", "allow", "exception"]
    #: the threshold, or the allow entries to add
    value: float | tuple[str, ...]
    reason: str
    #: the ruled requests the proposal is built from
    request_ids: tuple[str, ...] = ()
    #: an exception's scope: what every false positive shared
    tenant: str | None = None
    key: str | None = None
    roles: tuple[str, ...] | None = None

    @property
    def scope(self) -> str:
        parts = [f"tenant `{self.tenant}`" if self.tenant else "", f"key `{self.key}`" if self.key else ""]
        parts.append(f"role {', '.join(f'`{r}`' for r in self.roles)}" if self.roles else "")
        return " and ".join(p for p in parts if p)

    @property
    def summary(self) -> str:
        if self.kind == "threshold":
            return f"set `threshold: {self.value}` on {self.stage}/{self.check} (global)"
        entries = ", ".join(f"`{v}`" for v in self.entries)
        if self.kind == "exception":
            return f"add an exception to {self.stage}/{self.check} for {self.scope} only, allowing {entries}"
        return f"add {entries} to the `allow` list of {self.stage}/{self.check}"

    @property
    def entries(self) -> tuple[str, ...]:
        return self.value if isinstance(self.value, tuple) else ()


def has_threshold(check_type: str) -> bool:
    klass = check_class(check_type)
    return klass is not None and "threshold" in klass.Options.model_fields


def propose(
    check: str, check_type: str, stage: str, ruled: Sequence[RuledStep], known_attacks: Iterable[str] = ()
) -> Proposal | None:
    """The narrowest change that stops ``check`` firing on the false positives in ``ruled``."""
    fps = [r for r in ruled if r.ruling == "false_positive"]
    if not fps:
        return None
    confirmed = [r for r in ruled if r.ruling == "confirm"]
    attacks = [t.casefold() for t in (*known_attacks, *(r.text or "" for r in confirmed)) if t]
    entries: list[str] = []
    used: list[str] = []
    for value in _span_values(fps, confirmed):
        entries.append(value)
    for r in fps:
        if r.spans:
            continue
        entry = allow_entry(r, attacks)
        if entry and entry not in entries:
            entries.append(entry)
            used.append(r.request_id)
    if entries:
        n = len(fps)
        reason = (
            f"{n} false positive{'s' if n != 1 else ''}; each entry is the wording that decided, "
            "and none occurs in a known attack."
        )
        ids = tuple(used or (r.request_id for r in fps))
        tenant, key, roles = shared_scope(fps, stage)
        if tenant or key or roles:
            return Proposal(
                check,
                stage,
                "exception",
                tuple(entries),
                f"{reason} Every one came from the same {_scope_words(tenant, key, roles)}, so the entries "
                "hold there only.",
                ids,
                tenant,
                key,
                roles,
            )
        return Proposal(check, stage, "allow", tuple(entries), reason, ids)
    return _threshold(check, check_type, stage, fps, confirmed)


def shared_scope(fps: Sequence[RuledStep], stage: str) -> tuple[str | None, str | None, tuple[str, ...] | None]:
    """(tenant, key, roles) that every false positive shared, each None when they differ or are
    unknown. Roles only for input checks, and only the roles of data a user did not type
    (``tool``, ``document``) or the operator wrote: an exception for every ``user`` turn would be
    the check switched off for users, not a narrow fix."""

    def one(values: Iterable[str | None]) -> str | None:
        found = set(values)
        value = found.pop() if len(found) == 1 else None
        return value or None

    tenant = one(r.tenant for r in fps)
    key = one(r.key_id for r in fps)
    role = one(r.role for r in fps) if stage == "input" else None
    return tenant, key, (role,) if role and role != "user" else None


def _scope_words(tenant: str | None, key: str | None, roles: tuple[str, ...] | None) -> str:
    parts = [f"tenant ({tenant})" if tenant else "", f"API key ({key})" if key else ""]
    parts.append(f"message role ({', '.join(roles)})" if roles else "")
    return " and ".join(p for p in parts if p)


def _threshold(
    check: str, check_type: str, stage: str, fps: Sequence[RuledStep], confirmed: Sequence[RuledStep]
) -> Proposal | None:
    fp_scores = [r.score for r in fps if r.score is not None]
    ok_scores = [r.score for r in confirmed if r.score is not None]
    if not (has_threshold(check_type) and fp_scores and len(fp_scores) == len(fps)):
        return None
    high_fp = max(fp_scores)
    low_ok = min(ok_scores) if ok_scores else min(1.0, high_fp + 0.02)
    if high_fp >= low_ok:
        return None
    return Proposal(
        check,
        stage,
        "threshold",
        round((high_fp + low_ok) / 2, 3),
        "No allow entry can be built (no stored text, or its wording occurs in a known attack), "
        "so a global threshold: "
        f"{len(fps)} false positives scored at most {high_fp:.3f}; "
        + (f"confirmed firings scored at least {low_ok:.3f}." if ok_scores else "none was confirmed."),
        tuple(r.request_id for r in fps),
    )


def _span_values(fps: Sequence[RuledStep], confirmed: Sequence[RuledStep]) -> list[str]:
    def values(steps: Sequence[RuledStep]) -> Counter[str]:
        found: Counter[str] = Counter()
        for r in steps:
            for _, start, end in r.spans:
                value = (r.text or "")[start:end]
                if value and not PLACEHOLDER.fullmatch(value) and len(value) <= MAX_ALLOW_CHARS:
                    found[value] += 1
        return found

    bad = values(confirmed)
    return [v for v, _ in values(fps).most_common() if v not in bad]


def evidence_ngrams(detail: dict[str, Any]) -> list[str]:
    """The n-gram texts that decided, highest weight first (``detail.evidence.ngrams``)."""
    evidence = detail.get("evidence")
    grams = evidence.get("ngrams") if isinstance(evidence, dict) else None
    out = []
    for g in grams if isinstance(grams, list) else []:
        text = g.get("text") if isinstance(g, dict) else g
        if isinstance(text, str) and text.strip():
            out.append(text)
    return out


def _clean(text: str) -> str:
    cleaned: str = _SPACE.sub(" ", PLACEHOLDER.sub(" ", text))
    return cleaned.strip(" \t\n,;:")


def _clip(sentence: str, at: int) -> str:
    """At most ``MAX_ALLOW_CHARS`` of ``sentence``, whole words, around position ``at``."""
    if len(sentence) <= MAX_ALLOW_CHARS:
        return sentence
    lo = max(0, min(at - MAX_ALLOW_CHARS // 2, len(sentence) - MAX_ALLOW_CHARS))
    window = sentence[lo : lo + MAX_ALLOW_CHARS]
    words = window.split(" ")
    if lo > 0 and len(words) > 1:
        words = words[1:]
    if lo + MAX_ALLOW_CHARS < len(sentence) and len(words) > 1:
        words = words[:-1]
    return " ".join(words).strip()


def allow_entry(r: RuledStep, attacks: Sequence[str]) -> str | None:
    """The allow entry for one false positive of a whole-text check, or None."""
    text = _clean(r.text or "")
    if len(text) < MIN_ALLOW_CHARS:
        return None
    folded = text.casefold()
    sentences = [(m.start(), _clean(m.group())) for m in _SENTENCE.finditer(text)]
    sentences = [(start, s) for start, s in sentences if len(s) >= MIN_ALLOW_CHARS]
    candidates: list[str] = []
    for gram in evidence_ngrams(r.detail):
        pos = folded.find(gram.casefold().strip())
        if pos < 0:
            continue
        for start, sentence in sentences:
            if start <= pos < start + len(sentence) + 1:
                candidates.append(_clip(sentence, pos - start))
                break
        if candidates:
            break
    if not candidates and sentences:
        candidates.append(_clip(sentences[0][1], 0))
    candidates.append(_clip(text, 0))
    for entry in candidates:
        if len(entry) >= MIN_ALLOW_CHARS and not any(entry.casefold() in a for a in attacks):
            return entry
    return None


def is_applied(policy_text: str, proposal: Proposal) -> bool:
    """True when the policy already has what the proposal adds (so it is not offered again)."""
    entry = find_entry(_yaml().load(policy_text), proposal.stage, proposal.check)
    if entry is None:
        return False
    if proposal.kind == "threshold":
        return bool(entry.get("threshold") == proposal.value)
    holder = _exception_of(entry, proposal) if proposal.kind == "exception" else entry
    allow = holder.get("allow") if holder is not None else None
    present = {str(a).casefold() for a in allow} if isinstance(allow, list) else set()
    return all(e.casefold() in present for e in proposal.entries)


def _exception_of(entry: CommentedMap, proposal: Proposal) -> CommentedMap | None:
    """The check entry's exception with exactly the proposal's scope, if it has one."""
    found = entry.get("exceptions")
    for item in found if isinstance(found, list) else []:
        if not isinstance(item, CommentedMap):
            continue
        roles = item.get("roles")
        same_roles = (tuple(str(r) for r in roles) if isinstance(roles, list) else None) == proposal.roles
        if item.get("tenant") == proposal.tenant and item.get("key") == proposal.key and same_roles:
            return item
    return None


# -- editing the policy text ---------------------------------------------------------------


def _yaml() -> YAML:
    yaml = YAML(typ="rt", pure=True)
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def _entries(doc: Any, stage: str) -> Any:
    if stage == "stream":
        stream = doc.get("stream") if isinstance(doc, CommentedMap) else None
        return stream.get("checks") if isinstance(stream, CommentedMap) else None
    return doc.get(stage) if isinstance(doc, CommentedMap) else None


def find_entry(doc: Any, stage: str, check: str) -> CommentedMap | None:
    entries = _entries(doc, stage)
    if not isinstance(entries, CommentedSeq):
        return None
    for entry in entries:
        if isinstance(entry, CommentedMap) and (entry.get("name") or entry.get("check")) == check:
            return entry
    return None


def check_type_of(policy_text: str, stage: str, check: str) -> str | None:
    """The built-in check type of the entry named ``check`` in ``stage``, if the policy has one."""
    entry = find_entry(_yaml().load(policy_text), stage, check)
    kind = entry.get("check") if entry is not None else None
    return kind if isinstance(kind, str) else None


def apply(policy_text: str, proposal: Proposal) -> str | None:
    """The policy text with the proposal applied, or None when the policy has no such check."""
    yaml = _yaml()
    doc = yaml.load(policy_text)
    entry = find_entry(doc, proposal.stage, proposal.check)
    if entry is None:
        return None
    if proposal.kind == "threshold":
        entry["threshold"] = proposal.value
    elif proposal.kind == "exception":
        _add_allow(_exception_for(entry, proposal), proposal.entries)
    else:
        _add_allow(entry, proposal.entries)
    out = io.StringIO()
    yaml.dump(doc, out)
    return out.getvalue()


def _add_allow(holder: CommentedMap, entries: Sequence[str]) -> None:
    allow = holder.get("allow")
    if not isinstance(allow, list):
        allow = CommentedSeq()
        if holder.fa.flow_style():
            allow.fa.set_flow_style()
        holder["allow"] = allow
    present = {str(a).casefold() for a in allow}
    for value in entries:
        if value.casefold() not in present:
            allow.append(value)


def _exception_for(entry: CommentedMap, proposal: Proposal) -> CommentedMap:
    """The check entry's exception for the proposal's scope, added (with its reason) if missing."""
    found = _exception_of(entry, proposal)
    if found is not None:
        return found
    exceptions = entry.get("exceptions")
    if not isinstance(exceptions, list):
        exceptions = CommentedSeq()
        entry["exceptions"] = exceptions
    item = CommentedMap()
    if proposal.tenant:
        item["tenant"] = proposal.tenant
    if proposal.key:
        item["key"] = proposal.key
    if proposal.roles:
        roles = CommentedSeq(proposal.roles)
        roles.fa.set_flow_style()
        item["roles"] = roles
    item["reason"] = f"false positives ruled on {', '.join(proposal.request_ids[:3])}" + (
        ", ..." if len(proposal.request_ids) > 3 else ""
    )
    if entry.fa.flow_style():
        item.fa.set_flow_style()
    exceptions.append(item)
    return item
