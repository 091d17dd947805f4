"""API-key authentication: bearer key -> tenant, role, policy and limits.

Keys come from two places: the config file, and the database (``api_keys``, managed through
the admin API or ``warden keys``), which every replica polls (``gateway.fleet``). A key
revoked in the database stops working even if a config file still lists it. Keys are kept
only as SHA-256 digests; a presented key is hashed and compared with every stored digest by
``hmac.compare_digest``, so the time taken does not depend on how much of a key matched or
which key it was.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.config import GatewayConfig, Role
from gateway.errors import Forbidden, Unauthorized

if TYPE_CHECKING:
    from audit.fleet import KeyRecord

log = logging.getLogger("warden.auth")


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str
    tenant: str
    role: Role
    policy: str | None
    rpm: int | None = None
    tpm: int | None = None
    #: "config" (the config file) or "database"
    source: str = "config"


@dataclass(frozen=True, slots=True)
class _Entry:
    digest: bytes
    principal: Principal


class KeyStore:
    def __init__(self, config: GatewayConfig) -> None:
        self._config_entries: list[_Entry] = []
        self._db_entries: list[_Entry] = []
        self._revoked: frozenset[bytes] = frozenset()
        self._entries: list[_Entry] = []
        self.set_config(config)

    def set_config(self, config: GatewayConfig) -> None:
        """Take the keys of a (re)loaded config file; database keys stay."""
        self._config_entries = [
            _Entry(
                bytes.fromhex(k.digest),
                Principal(
                    k.key_id, k.tenant, k.role, str(config.resolve(k.policy)) if k.policy else None, k.rpm, k.tpm
                ),
            )
            for k in config.keys
        ]
        self._rebuild()

    def set_database_keys(self, records: Iterable[KeyRecord], policy_path: Callable[[str], str | None]) -> None:
        """Take the database's keys: active ones are added, revoked ones shut off any key with
        that digest. A key naming a policy this gateway does not load is left out (fail closed)."""
        entries, revoked = [], set()
        for r in records:
            digest = bytes.fromhex(r.key_sha256)
            if r.revoked_at is not None:
                revoked.add(digest)
                continue
            path = policy_path(r.policy) if r.policy else None
            if r.policy and path is None:
                log.error(
                    "key %s names policy %r, which this gateway does not load: key not accepted", r.key_id, r.policy
                )
                continue
            role: Role = r.role if r.role in ("client", "reviewer", "admin") else "client"  # type: ignore[assignment]
            entries.append(_Entry(digest, Principal(r.key_id, r.tenant, role, path, r.rpm, r.tpm, "database")))
        self._db_entries, self._revoked = entries, frozenset(revoked)
        self._rebuild()

    def _rebuild(self) -> None:
        # One list, replaced whole: a request thread never sees half an update.
        self._entries = [e for e in (*self._config_entries, *self._db_entries) if e.digest not in self._revoked]

    def by_id(self, key_id: str) -> Principal | None:
        """The principal of a configured key, by its non-secret id (for front doors that
        authenticate callers themselves, like LiteLLM Proxy)."""
        return next((e.principal for e in self._entries if e.principal.key_id == key_id), None)

    def principals(self) -> list[Principal]:
        return [e.principal for e in self._entries]

    def config_key(self, key_id: str) -> tuple[str, Principal] | None:
        """A config-file key by id (hex digest, principal), revoked or not."""
        return next(((e.digest.hex(), e.principal) for e in self._config_entries if e.principal.key_id == key_id), None)

    def config_ids(self) -> frozenset[str]:
        return frozenset(e.principal.key_id for e in self._config_entries)

    def config_digests(self) -> frozenset[str]:
        return frozenset(e.digest.hex() for e in self._config_entries)

    def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise Unauthorized("Missing API key: send 'Authorization: Bearer <key>'.")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("Malformed Authorization header: expected 'Bearer <key>'.")
        digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        found: Principal | None = None
        for entry in self._entries:
            if hmac.compare_digest(entry.digest, digest):
                found = entry.principal
        if found is None:
            raise Unauthorized("Incorrect API key provided.")
        return found


def require_role(principal: Principal, *roles: Role) -> None:
    if principal.role not in roles:
        raise Forbidden(f"This endpoint needs a key with role {' or '.join(roles)}.")
