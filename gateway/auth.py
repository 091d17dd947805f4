"""API-key authentication: bearer key -> tenant, role and policy.

Keys are kept only as SHA-256 digests in memory; a presented key is hashed and compared
with every stored digest by ``hmac.compare_digest``, so the time taken does not depend on
how much of a key matched or which key it was.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from gateway.config import GatewayConfig, Role
from gateway.errors import Forbidden, Unauthorized


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str
    tenant: str
    role: Role
    policy: str | None
    rpm: int | None = None


class KeyStore:
    def __init__(self, config: GatewayConfig) -> None:
        self._entries = [
            (
                bytes.fromhex(k.digest),
                Principal(k.key_id, k.tenant, k.role, str(config.resolve(k.policy)) if k.policy else None, k.rpm),
            )
            for k in config.keys
        ]

    def by_id(self, key_id: str) -> Principal | None:
        """The principal of a configured key, by its non-secret id (for front doors that
        authenticate callers themselves, like LiteLLM Proxy)."""
        return next((p for _, p in self._entries if p.key_id == key_id), None)

    def principals(self) -> list[Principal]:
        return [p for _, p in self._entries]

    def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise Unauthorized("Missing API key: send 'Authorization: Bearer <key>'.")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("Malformed Authorization header: expected 'Bearer <key>'.")
        digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        found: Principal | None = None
        for stored, principal in self._entries:
            if hmac.compare_digest(stored, digest):
                found = principal
        if found is None:
            raise Unauthorized("Incorrect API key provided.")
        return found


def require_role(principal: Principal, *roles: Role) -> None:
    if principal.role not in roles:
        raise Forbidden(f"This endpoint needs a key with role {' or '.join(roles)}.")
