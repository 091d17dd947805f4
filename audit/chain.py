"""Hash chains over audit records: ``hash = H(prev_hash || canonical(record))``.

``H`` is HMAC-SHA256 under a key derived from ``WARDEN_AUDIT_KEY`` when it is set (then
someone with database access alone cannot rebuild a chain after editing it), else SHA-256.

Ownership: each ``AuditWriter`` (one per gateway process) creates a fresh chain when it
starts, with a random ``chain_id``; a restarted process starts a new chain rather than
continuing the old one, so it never has to read or lock another process's head, and replicas
never contend. A writer given a fixed ``chain_id`` (one per replica, from its config)
continues that chain instead: it reads the head from ``audit_chains`` before its first commit.
Two live processes with the same fixed id stay correct (the unique ``(chain_id, seq)`` turns
a race into a retry after re-reading the head) but contend, so ids must be distinct.

Records are linked at the moment they are committed (``seq`` from 1, no gaps); records
that wait in a spool are linked when they are replayed, into the replaying writer's chain.
Request records and review decisions have separate chains.

``verify`` lives in ``audit.read.verify``, ``prune`` in ``audit.read.prune``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import socket
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from audit.keys import derive, env_key, key_id
from audit.record import ChainKind
from audit.write.prepared import Prepared

GENESIS = "0" * 64
#: leaves room for the ``.reviews`` suffix within the 64-character column
MAX_CHAIN_ID = 48
HMAC_SHA256 = "hmac-sha256"
SHA256 = "sha256"
_PIECE = 2047


@dataclass(frozen=True, slots=True)
class ChainKey:
    """What a chain is hashed with: a derived HMAC key, or nothing (plain SHA-256)."""

    secret: bytes | None
    key_id: str | None

    @property
    def algorithm(self) -> str:
        return SHA256 if self.secret is None else HMAC_SHA256

    @staticmethod
    def from_env() -> ChainKey:
        return ChainKey.from_key(env_key())

    @staticmethod
    def from_key(key: bytes | None) -> ChainKey:
        if key is None:
            return ChainKey(None, None)
        return ChainKey(derive(key, "chain"), key_id(key))

    def digest(self, data: bytes) -> str:
        h = hashlib.sha256() if self.secret is None else hmac.new(self.secret, digestmod=hashlib.sha256)
        # In pieces under 2 KiB: hashlib lets go of the interpreter lock for larger inputs
        # (HASHLIB_GIL_MINSIZE), and the writer's commit thread, which links every record, then
        # queued behind its prepare thread for the lock again after each one (~5 us of hashing).
        view = memoryview(data)
        for i in range(0, len(view), _PIECE):
            h.update(view[i : i + _PIECE])
        return h.hexdigest()


def link_hash(key: ChainKey, prev_hash: str, canonical: bytes) -> str:
    return key.digest(prev_hash.encode("ascii") + canonical)


def checkpoint_mac(key: ChainKey, chain_id: str, seq: int, hash_: str, before: datetime) -> str:
    return key.digest(f"checkpoint|{chain_id}|{seq}|{hash_}|{before.isoformat()}".encode())


@dataclass(slots=True)
class Chain:
    """The head of one chain, held in memory by its owning writer."""

    chain_id: str
    kind: ChainKind
    key: ChainKey
    seq: int = 0
    head: str = GENESIS
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    #: True once the chain's row exists in the database
    registered: bool = False
    #: False after a failed commit, which may have committed anyway: re-read the head first
    synced: bool = True

    @staticmethod
    def new(kind: ChainKind, key: ChainKey | None = None, *, chain_id: str | None = None) -> Chain:
        """A fresh chain, or (with ``chain_id``) one to continue from its stored head."""
        key = key if key is not None else ChainKey.from_env()
        if chain_id is None:
            return Chain(uuid.uuid4().hex, kind, key)
        if not 0 < len(chain_id) <= MAX_CHAIN_ID:
            raise ValueError(f"chain_id must be 1..{MAX_CHAIN_ID} characters: {chain_id!r}")
        return Chain(chain_id, kind, key, synced=False)

    def snapshot(self) -> tuple[int, str]:
        return self.seq, self.head

    def restore(self, state: tuple[int, str]) -> None:
        self.seq, self.head = state

    def link(self, item: Prepared) -> None:
        item.obj["chain_id"], item.obj["seq"], item.prev_hash = self.chain_id, self.seq + 1, self.head
        item.hash = link_hash(self.key, self.head, item.canonical())
        self.seq, self.head = self.seq + 1, item.hash
