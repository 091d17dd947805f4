"""Documents and tool results, clean and with an instruction hidden in them (indirect injection).

An indirect injection is an instruction addressed to the model inside data it reads: a web
page a tool fetched, an e-mail a user pasted, a JSON field an API returned. Whether a
sentence is one depends on where it sits, so the detector for it is trained and measured on
*documents*: ordinary texts wrapped the way tools and applications hand them over, once
clean and once with an instruction inserted at the start, middle or end.

The instructions come from two places, each with its own train / test halves so that the
measurement uses instructions the model never saw:

* BIPIA's attacks (``../shared/corpora/bipia``), recovered by diffing each injected context
  against its clean twin; BIPIA's own split is kept;
* Warden's own payloads (``data/indirect_payloads.jsonl``: disguised as notes to the AI, HTML
  comments, fake system notes, markdown images ...), split by disguise family.

The carriers are the benign texts of the shared corpora and Warden's own clean documents,
so a clean document is as ordinary as the data the gateway will see. Everything is seeded.
"""

from __future__ import annotations

import difflib
import json
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from policies.training.corpora import Row

SEED = "warden-documents-v1"

#: how a tool or an application hands a text to the model
WRAPPERS: tuple[str, ...] = (
    "{text}",
    '{{"results": [{{"title": "{title}", "url": "https://{host}/{slug}", "snippet": {json}}}]}}',
    '{{"status": "ok", "data": {{"id": {n}, "body": {json}}}}}',
    "From: {name} <{user}@{host}>\nSubject: {title}\n\n{text}",
    "<html><head><title>{title}</title></head><body><p>{text}</p></body></html>",
    "# {title}\n\n{text}",
    "Search result 1 of 3 ({host}):\n{text}",
    "id,comment\n{n},{csv}",
    "[{date}] {name}: {text}",
    "Page content:\n---\n{text}\n---",
)
_HOSTS = ("example.com", "docs.example.org", "news.example.net", "shop.example.io", "wiki.example.edu")
_NAMES = ("Dana Reyes", "Lee Park", "Sam Okafor", "Ana Silva", "Chris Novak", "Mia Chen")


@dataclass(frozen=True, slots=True)
class Payload:
    text: str
    split: str  # "train" | "test"
    origin: str


def bipia_payloads(rows: Sequence[Row], raw: Sequence[dict[str, object]]) -> list[Payload]:
    """BIPIA's inserted instructions: what an injected context adds to its clean twin."""
    clean: dict[str, str] = {}
    for r in raw:
        if r.get("label") == 0:
            clean[str(r["source_id"])] = str(r["text"])
    found: dict[str, Payload] = {}
    for r in raw:
        if r.get("label") != 1 or str(r["source_id"]) not in clean:
            continue
        added = _added(clean[str(r["source_id"])], str(r["text"]))
        if len(added) >= 12 and added not in found:
            found[added] = Payload(added, "test" if r.get("split") == "test" else "train", "bipia")
    return list(found.values())


def _added(before: str, after: str) -> str:
    matcher = difflib.SequenceMatcher(a=before, b=after, autojunk=False)
    parts = [after[j1:j2] for tag, _, _, j1, j2 in matcher.get_opcodes() if tag in ("insert", "replace")]
    return " ".join(p.strip() for p in parts if p.strip())


def own_payloads(lines: Iterable[str]) -> list[Payload]:
    out = []
    for line in lines:
        if line.strip():
            raw = json.loads(line)
            if int(raw.get("label", 1)) == 1:
                text = str(raw.get("payload") or raw["text"])
                out.append(Payload(text, str(raw.get("split") or "train"), "warden"))
    return out


def wrap(text: str, rng: random.Random) -> str:
    """``text`` as one of the shapes tools and applications hand data over in."""
    template = rng.choice(WRAPPERS)
    words = [w for w in text.split()[:6] if w.isalpha()] or ["Update"]
    title = " ".join(words[:4]).title()
    return template.format(
        text=text,
        title=title,
        json=json.dumps(text, ensure_ascii=False),
        csv='"' + text.replace('"', '""') + '"',
        host=rng.choice(_HOSTS),
        slug="-".join(w.lower() for w in words[:3]),
        user=rng.choice(("info", "billing", "noreply", "team")),
        name=rng.choice(_NAMES),
        n=rng.randrange(1000, 99999),
        date=f"2026-0{rng.randrange(1, 10)}-1{rng.randrange(0, 10)} 0{rng.randrange(0, 10)}:1{rng.randrange(0, 10)}",
    )


def insert(document: str, payload: str, rng: random.Random) -> str:
    """``payload`` at the start, a sentence boundary in the middle, or the end of ``document``."""
    where = rng.choice(("start", "middle", "end"))
    if where == "start":
        return f"{payload}\n{document}"
    if where == "end":
        return f"{document}\n{payload}"
    cuts = [i + 1 for i, ch in enumerate(document) if ch in ".!?\n" and 0 < i < len(document) - 1]
    cut = rng.choice(cuts) if cuts else len(document) // 2
    return f"{document[:cut]} {payload} {document[cut:]}"


def build(carriers: Sequence[Row], payloads: Sequence[Payload], split: str, per_carrier: float = 0.5) -> list[Row]:
    """Wrapped documents from ``carriers``: each once clean (0) and, for a share of them, once
    with a payload of ``split`` inserted (1). Rows keep the carrier's source and group, so a
    leave-one-source-out split leaves the documents built from that source out too."""
    chosen = [p for p in payloads if p.split == split]
    if not chosen:
        return []
    rng = random.Random(f"{SEED}:{split}")
    out: list[Row] = []
    for row in carriers:
        doc = wrap(row.text, rng)
        out.append(_doc(row, doc, 0, "clean"))
        if rng.random() < per_carrier:
            payload = rng.choice(chosen)
            out.append(_doc(row, wrap(insert(row.text, payload.text, rng), rng), 1, payload.origin))
    return out


def _doc(row: Row, text: str, label: int, kind: str) -> Row:
    return Row(
        text=text,
        label=label,
        task="indirect",
        source=row.source,
        group=row.group,
        category=f"document:{kind}",
        lang=row.lang,
        split=row.split,
    )


def by_source(rows: Iterable[Row]) -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        out[row.source].append(row)
    return out
