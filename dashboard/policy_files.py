"""Policy edits: validate, diff, save as a new version, roll back.

Saving does two things, in this order:

1. stores the text in ``policy_versions`` (history and rollback; ``version_hash`` is the same
   content hash the gateway writes into every audit record, so records link to versions);
   the text the file held before is stored too if it was never saved, so the edit can be undone;
2. writes the policy file atomically (temporary file in the same folder, fsync, ``os.replace``),
   which the gateway's watcher hot-reloads on every replica that reads the file, and records
   the version as activated (``policy_activations``), which replicas on other hosts poll.

An invalid text is refused before either step, with every error and its line; nothing is saved.
"""

from __future__ import annotations

import difflib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from dashboard import data
from policies.compiled import CompiledPolicy
from policies.loader import load_policy_text
from policies.yamlio import FieldError, YamlModelError


class PolicyInvalid(ValueError):
    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


@dataclass(frozen=True, slots=True)
class Validation:
    policy: CompiledPolicy | None
    errors: tuple[FieldError, ...] = ()

    @property
    def ok(self) -> bool:
        return self.policy is not None


@dataclass(frozen=True, slots=True)
class SaveResult:
    version: data.PolicyVersion
    #: False when the text was already the file's content (nothing changed)
    changed: bool


def validate(text: str, source: str) -> Validation:
    try:
        return Validation(load_policy_text(text, source))
    except YamlModelError as exc:
        return Validation(None, tuple(exc.errors))


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def diff(old: str, new: str, name: str) -> str:
    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True), f"{name} (running)", f"{name} (edited)"
        )
    )


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one step: readers see the old file or the new one."""
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems cannot fsync a directory; the rename itself is still atomic
    finally:
        os.close(fd)


def save(engine: Engine, path: Path, text: str, *, user: str, note: str | None) -> SaveResult:
    """Validate, record the version, write the file. Raises ``PolicyInvalid`` (nothing saved)."""
    checked = validate(text, str(path))
    if checked.policy is None:
        raise PolicyInvalid(list(checked.errors))
    new = checked.policy
    running = read(path) if path.exists() else None
    if running is not None and running != text:
        before = validate(running, str(path))
        if before.policy is not None:
            data.record_policy_version(
                engine,
                name=before.policy.name,
                version_hash=before.policy.version,
                yaml_text=running,
                created_by="(file)",
                note="the file's content before a dashboard edit",
            )
    version, _ = data.record_policy_version(
        engine, name=new.name, version_hash=new.version, yaml_text=text, created_by=user, note=note or None
    )
    if running == text:
        return SaveResult(version, changed=False)
    write_atomic(path, text)
    # Replicas that do not share this file (other hosts) take the version from the database.
    from audit.fleet import activate

    activate(engine, new.name, new.version, by=user, note=note or None)
    return SaveResult(version, changed=True)


def rollback(engine: Engine, path: Path, version: data.PolicyVersion, *, user: str) -> SaveResult:
    """Make a stored version the running one again (validated again: checks may have changed)."""
    return save(engine, path, version.yaml_text, user=user, note=f"rollback to {version.version_hash}")
