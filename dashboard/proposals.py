"""Proposed policy changes from reviewers' rulings: a higher threshold, or an ``allow`` entry.

For a check whose firings reviewers called false positives:

* if the check has a ``threshold`` option and every false positive scored below every
  confirmed firing, propose the midpoint (no confirmed firing would be lost);
* otherwise propose an ``allow`` entry: the most common flagged value when the stored text
  still holds it (``store_text: full``), else the most common first line of the flagged
  texts, which silences a whole-text check on that phrasing only.

Proposals are suggestions to replay, never applied on their own: ``apply`` edits the policy
YAML (keeping its comments and layout) for the editor, where replay shows the effect.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from dashboard.data import RuledStep
from dashboard.highlight import PLACEHOLDER
from policies.registry import check_class

MAX_ALLOW_CHARS = 80


@dataclass(frozen=True, slots=True)
class Proposal:
    check: str
    stage: str
    kind: Literal["threshold", "allow"]
    value: float | str
    reason: str

    @property
    def summary(self) -> str:
        if self.kind == "threshold":
            return f"set `threshold: {self.value}` on {self.stage}/{self.check}"
        return f"add `{self.value}` to the `allow` list of {self.stage}/{self.check}"


def has_threshold(check_type: str) -> bool:
    klass = check_class(check_type)
    return klass is not None and "threshold" in klass.Options.model_fields


def propose(check: str, check_type: str, stage: str, ruled: Sequence[RuledStep]) -> Proposal | None:
    fps = [r for r in ruled if r.ruling == "false_positive"]
    if not fps:
        return None
    confirmed = [r for r in ruled if r.ruling == "confirm"]
    fp_scores = [r.score for r in fps if r.score is not None]
    ok_scores = [r.score for r in confirmed if r.score is not None]
    if has_threshold(check_type) and len(fp_scores) == len(fps) and fp_scores:
        high_fp = max(fp_scores)
        low_ok = min(ok_scores) if ok_scores else min(1.0, high_fp + 0.02)
        if high_fp < low_ok:
            value = round((high_fp + low_ok) / 2, 3)
            return Proposal(
                check,
                stage,
                "threshold",
                value,
                f"{len(fps)} false positives scored at most {high_fp:.3f}; "
                + (f"confirmed firings scored at least {low_ok:.3f}." if ok_scores else "none was confirmed."),
            )
    term = _allow_term(fps, confirmed)
    if term is None:
        return None
    return Proposal(check, stage, "allow", term, f"{len(fps)} false positives; the most common wording is shown.")


def _span_values(steps: Sequence[RuledStep]) -> Counter[str]:
    values: Counter[str] = Counter()
    for r in steps:
        for _, start, end in r.spans:
            value = (r.text or "")[start:end]
            if value and not PLACEHOLDER.fullmatch(value) and len(value) <= MAX_ALLOW_CHARS:
                values[value] += 1
    return values


def _first_line(text: str | None) -> str | None:
    for line in (text or "").splitlines():
        line = PLACEHOLDER.sub("", line).strip()
        if len(line) >= 8:
            return line[:MAX_ALLOW_CHARS].strip()
    return None


def _allow_term(fps: Sequence[RuledStep], confirmed: Sequence[RuledStep]) -> str | None:
    confirmed_values = _span_values(confirmed)
    for value, _ in _span_values(fps).most_common():
        if value not in confirmed_values:
            return value
    lines = Counter(line for r in fps if not r.spans and (line := _first_line(r.text)))
    return lines.most_common(1)[0][0] if lines else None


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
    else:
        allow = entry.get("allow")
        if not isinstance(allow, list):
            allow = CommentedSeq()
            if entry.fa.flow_style():
                allow.fa.set_flow_style()
            entry["allow"] = allow
        if proposal.value not in allow:
            allow.append(proposal.value)
    out = io.StringIO()
    yaml.dump(doc, out)
    return out.getvalue()
