"""Add and remove API keys in a gateway config file, keeping its comments and layout.

Only the SHA-256 of a new key is written; the key itself is shown once, to the caller.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    return yaml


def _write(path: Path, doc: object) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        _yaml().dump(doc, f)
    os.replace(tmp, path)  # atomic: a reader never sees half a file


def create_key(path: Path, *, tenant: str, role: str, key_id: str | None, policy: str | None) -> tuple[str, str]:
    if role not in ("client", "reviewer", "admin"):
        raise ValueError("role must be client, reviewer or admin")
    doc = _yaml().load(path.read_text(encoding="utf-8"))
    keys = doc.setdefault("keys", CommentedSeq())
    key = "sk-warden-" + secrets.token_urlsafe(32)
    kid = key_id or "key_" + secrets.token_hex(4)
    if any(isinstance(k, dict) and k.get("id") == kid for k in keys):
        raise ValueError(f"a key with id {kid!r} exists")
    entry = CommentedMap(key_sha256=hashlib.sha256(key.encode()).hexdigest(), tenant=tenant, role=role, id=kid)
    if policy:
        entry["policy"] = policy
    entry.fa.set_flow_style()
    keys.append(entry)
    _write(path, doc)
    return key, kid


def revoke_key(path: Path, key_id: str) -> bool:
    doc = _yaml().load(path.read_text(encoding="utf-8"))
    keys = doc.get("keys") or []
    kept = [k for k in keys if not (isinstance(k, dict) and k.get("id") == key_id)]
    if len(kept) == len(keys):
        return False
    doc["keys"] = CommentedSeq(kept)
    _write(path, doc)
    return True
