"""Policy edits: validate, diff, save as a new version, roll back.

Saving does two things, in this order:

1. stores the text in ``policy_versions`` (history and rollback; ``version_hash`` is the same
   content hash the gateway writes into every audit record, so records link to versions);
   the text the file held before is stored too if it was never saved, so the edit can be undone;
2. writes the policy file atomically (temporary file in the same folder, fsync, ``os.replace``),
   which the gateway's watcher hot-reloads on every replica that reads the file, and records
   the version as activated (``policy_activations``), which replicas on other hosts poll.

An invalid text is refused before either step, with every error and its line; nothing is saved.
So is a change whose regression evaluation (``dashboard.evaluation``) shows it lets through a
known attack that the running version catches, unless an admin gives a written reason: the
reason and the evaluation are kept with the version, and the decision goes into the audit
trail as a chained review record on ``policy:<name>@<version>`` (``POLICY_SUBJECT``).
"""

from __future__ import annotations

import difflib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import orjson
from sqlalchemy import Engine

from audit.record import Ruling
from audit.write.writer import AuditWriter
from dashboard import data
from dashboard.evaluation import Evaluation
from policies.compiled import CompiledPolicy
from policies.loader import load_policy_text
from policies.yamlio import FieldError, YamlModelError

#: the review-chain subject of a decision about a policy version (not a request id)
POLICY_SUBJECT = "policy:{name}@{version}"
REASON_MIN = 10


class WeakeningRefused(ValueError):
    """The change lets known attacks through and no admin reason was given."""

    def __init__(self, evaluation: Evaluation, message: str) -> None:
        self.evaluation = evaluation
        super().__init__(message)


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


def _check_evaluation(new: CompiledPolicy, evaluation: Evaluation | None, reason: str) -> None:
    if evaluation is None:
        return
    if evaluation.edited_version != new.version:
        raise WeakeningRefused(evaluation, "the evaluation is for another text; evaluate this one before saving")
    if evaluation.weakens and len(reason) < REASON_MIN:
        ids = ", ".join(c.prompt.id for c in evaluation.weakened[:10])
        raise WeakeningRefused(
            evaluation,
            f"this change lets through {len(evaluation.weakened)} known attack(s) the running version "
            f"catches ({ids}); an admin must confirm it with a written reason (at least {REASON_MIN} characters)",
        )


def save(
    engine: Engine,
    path: Path,
    text: str,
    *,
    user: str,
    note: str | None,
    evaluation: Evaluation | None,
    weakening_reason: str | None = None,
    writer: AuditWriter | None = None,
) -> SaveResult:
    """Validate, check the evaluation, record the version, write the file.

    Raises ``PolicyInvalid`` or ``WeakeningRefused``; then nothing is saved. ``evaluation`` is
    None only when there is no running version to compare with (its file does not validate).
    """
    checked = validate(text, str(path))
    if checked.policy is None:
        raise PolicyInvalid(list(checked.errors))
    new = checked.policy
    reason = (weakening_reason or "").strip()
    _check_evaluation(new, evaluation, reason)
    weakening = evaluation is not None and evaluation.weakens
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
        engine,
        name=new.name,
        version_hash=new.version,
        yaml_text=text,
        created_by=user,
        note=note or None,
        evaluation=orjson.dumps(evaluation.summary()).decode() if evaluation is not None else None,
        weakening_reason=reason if weakening else None,
    )
    if weakening and evaluation is not None:
        _audit_weakening(writer, version, user, reason, evaluation)
    if running == text:
        return SaveResult(version, changed=False)
    write_atomic(path, text)
    # Replicas that do not share this file (other hosts) take the version from the database.
    from audit.fleet import activate

    activate(engine, new.name, new.version, by=user, note=note or None)
    return SaveResult(version, changed=True)


def _audit_weakening(
    writer: AuditWriter | None, version: data.PolicyVersion, user: str, reason: str, evaluation: Evaluation
) -> None:
    """A chained review record: who let which known attacks through, and why."""
    if writer is None:
        return
    lets_through = ", ".join(f"{c.prompt.id} ({c.prompt.category})" for c in evaluation.weakened[:20])
    more = len(evaluation.weakened) - 20
    note = (
        f"weakening change confirmed by admin: {reason} | lets through {len(evaluation.weakened)} known "
        f"attack(s): {lets_through}{f' and {more} more' if more > 0 else ''} | running version "
        f"{evaluation.running_version}"
    )
    subject = POLICY_SUBJECT.format(name=version.name, version=version.version_hash)
    writer.submit_review(subject, user, Ruling.confirm, note[:4000])
    writer.flush(10)


def rollback(
    engine: Engine,
    path: Path,
    version: data.PolicyVersion,
    *,
    user: str,
    evaluation: Evaluation | None,
    weakening_reason: str | None = None,
    writer: AuditWriter | None = None,
) -> SaveResult:
    """Make a stored version the running one again (validated and evaluated again: checks may have changed)."""
    return save(
        engine,
        path,
        version.yaml_text,
        user=user,
        note=f"rollback to {version.version_hash}",
        evaluation=evaluation,
        weakening_reason=weakening_reason,
        writer=writer,
    )
