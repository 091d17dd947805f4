"""The audit key, and the sub-keys derived from it for each use.

``WARDEN_AUDIT_KEY`` (any string; use 32+ random bytes, e.g. ``openssl rand -hex 32``) is
the one secret. Uses never share it directly: each gets ``HMAC(key, label)``, so a
fingerprint can never be confused with a chain hash.

* Chain hashes use the environment key only: without it the chain is plain SHA-256 (detects
  accidents and edits by someone who does not re-hash, not a deliberate rewrite).
* Fingerprints always need a key, so without the environment variable a random per-install
  key is created once in ``WARDEN_AUDIT_KEY_FILE`` (default ``var/audit.key`` under the working
  directory, mode 0600). Replicas on several hosts must share ``WARDEN_AUDIT_KEY`` for their
  fingerprints to match.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
from functools import lru_cache
from pathlib import Path

ENV_KEY = "WARDEN_AUDIT_KEY"
ENV_KEY_FILE = "WARDEN_AUDIT_KEY_FILE"
DEFAULT_KEY_FILE = Path("var/audit.key")


def env_key() -> bytes | None:
    value = os.environ.get(ENV_KEY)
    return value.encode() if value else None


def derive(key: bytes, label: str) -> bytes:
    return hmac.digest(key, b"warden-audit/" + label.encode(), "sha256")


def key_id(key: bytes) -> str:
    """A short public name for a key, so verify can say *which* key a chain needs."""
    return derive(key, "key-id").hex()[:16]


def fingerprint_key() -> bytes:
    return _fingerprint_key(os.environ.get(ENV_KEY) or None, os.environ.get(ENV_KEY_FILE) or None)


@lru_cache(maxsize=8)
def _fingerprint_key(env_value: str | None, key_file: str | None) -> bytes:
    if env_value is not None:
        return derive(env_value.encode(), "fingerprint")
    return derive(_file_key(Path(key_file or DEFAULT_KEY_FILE).resolve()), "fingerprint")


def _file_key(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write a private temp file, then link it into place: the link is atomic and fails if
    # another process got there first, so nobody ever reads a half-written key.
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):  # another process won: use its key
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_bytes()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
