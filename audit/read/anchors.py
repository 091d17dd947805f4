"""Signed chain heads kept outside the database: publish them, and hold the database to them.

A hash chain kept only inside the database it protects cannot show that its newest records
were cut off: delete them, move ``audit_chains.last_seq`` / ``head_hash`` back, and the chain
still verifies. So, as Certificate Transparency does with signed tree heads (RFC 6962/9162)
and immudb/QLDB with the digests an auditor keeps, each chain's head (chain id, kind, seq,
hash, time) is signed with an Ed25519 key that is not in the database and published
elsewhere: appended to files in a folder (``audit.anchors.dir``; one file per publishing
process and UTC day, opened append-only and fsynced), and optionally POSTed to a webhook or
sent to syslog. The gateway publishes every ``interval_s`` and at shutdown; ``warden audit
anchor`` publishes once (after ``erase``, or from cron).

``check_anchors`` then says, per chain, whether every record a published head covers is still
there with the same hash: records deleted or the head rewound (``anchor_missing``, naming
the missing seq range), or a record rewritten (``anchor_mismatch``, naming the range between
the last head that still matches and the first that does not). Records pruned below a valid
checkpoint are covered by it. What no anchor can cover: records written after the newest
published head (at most ``interval_s`` of them), which the result lists as notes.

Anchors are verified with the public key from the config (or ``--public-key``), never with a
key found next to the anchors: whoever can rewrite the database and the anchor files could
otherwise sign new ones with a key of their own.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import logging
import os
import socket
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import Engine, Table, func, select

from audit.chain import ChainKey
from audit.read.verify import KINDS, Problem, ProblemKind, Report, load_chains, load_checkpoints, snapshot
from audit.rows import CHAINS
from audit.settings import AnchorSettings
from audit.syslog import NOTICE, SyslogSender, format_message

log = logging.getLogger("warden.audit.anchors")

FORMAT = 1
_CANON = orjson.OPT_SORT_KEYS | orjson.OPT_UTC_Z
_PAGE = 500


# -- keys -------------------------------------------------------------------------------------


def generate_key(out: Path) -> str:
    """Write a new Ed25519 private key to ``out`` (PEM, mode 0600) and its public key to
    ``out.pub``; returns the public key (base64), which goes into the config."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    out.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never overwrite a key
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public = public_key_text(key.public_key())
    out.with_name(out.name + ".pub").write_text(public + "\n", encoding="ascii")
    return public


def load_private_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return key


def public_key_text(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def load_public_key(value: str) -> Ed25519PublicKey:
    """A public key given as base64 (what ``anchor-key`` prints) or as a file holding that."""
    text = value.strip()
    path = Path(text)
    if len(text) != 44 and path.is_file():
        text = path.read_text(encoding="ascii").strip()
    try:
        raw = base64.b64decode(text, validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not an Ed25519 public key (base64 of 32 bytes): {value!r}") from exc


def public_key_id(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


# -- anchors ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Head:
    chain_id: str
    kind: str
    seq: int
    hash: str


@dataclass(frozen=True, slots=True)
class Anchor:
    """A published, signature-checked chain head."""

    chain_id: str
    kind: str
    seq: int
    hash: str
    at: datetime
    #: where it was read from (file and line, or URL and line)
    source: str


def _payload(obj: dict[str, Any]) -> bytes:
    return orjson.dumps({k: v for k, v in obj.items() if k != "sig"}, option=_CANON)


def sign_head(key: Ed25519PrivateKey, head: Head, at: datetime) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "v": FORMAT,
        "chain_id": head.chain_id,
        "kind": head.kind,
        "seq": head.seq,
        "hash": head.hash,
        "at": at.astimezone(UTC),
        "key_id": public_key_id(key.public_key()),
    }
    obj["sig"] = base64.b64encode(key.sign(_payload(obj))).decode("ascii")
    return obj


def anchor_line(obj: dict[str, Any]) -> bytes:
    return orjson.dumps(obj, option=_CANON) + b"\n"


def read_heads(engine: Engine) -> list[Head]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(CHAINS.c.chain_id, CHAINS.c.kind, CHAINS.c.last_seq, CHAINS.c.head_hash).where(CHAINS.c.last_seq > 0)
        )
        return [Head(r.chain_id, r.kind, int(r.last_seq), r.head_hash) for r in rows]


# -- publishing -------------------------------------------------------------------------------

Sink = Callable[[list[dict[str, Any]]], None]


class DirSink:
    """Appends anchors to ``anchors-<UTC date>-<host>-<pid>.jsonl`` in a folder, fsynced."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self._name = f"{_clean(socket.gethostname())}-{os.getpid()}"

    def path_for(self, at: datetime) -> Path:
        return self.folder / f"anchors-{at.astimezone(UTC):%Y%m%d}-{self._name}.jsonl"

    def __call__(self, anchors: list[dict[str, Any]]) -> None:
        data = b"".join(anchor_line(a) for a in anchors)
        fd = os.open(self.path_for(datetime.now(UTC)), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)


def _clean(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:64]


class WebhookSink:
    def __init__(self, url: str, *, timeout_s: float = 5.0) -> None:
        self.url = url
        self._client = httpx.Client(timeout=timeout_s)

    def __call__(self, anchors: list[dict[str, Any]]) -> None:
        body = orjson.dumps({"anchors": anchors}, option=_CANON)
        self._client.post(self.url, content=body, headers={"content-type": "application/json"}).raise_for_status()


class SyslogSink:
    def __init__(self, url: str) -> None:
        self._sender = SyslogSender(url)

    def __call__(self, anchors: list[dict[str, Any]]) -> None:
        for a in anchors:
            line = anchor_line(a).decode().rstrip("\n")
            self._sender.send(format_message(line, msgid="anchor", severity=NOTICE))


class AnchorPublisher:
    """Signs and publishes chain heads that moved since it last published them."""

    def __init__(self, engine: Engine, key: Ed25519PrivateKey, sinks: Sequence[Sink], *, interval_s: float = 60.0):
        self.engine = engine
        self.key = key
        self.sinks = list(sinks)
        self.interval_s = interval_s
        self._published: dict[str, tuple[int, str]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.failures = 0

    @staticmethod
    def from_settings(engine: Engine, settings: AnchorSettings, resolve: Callable[[str], Path]) -> AnchorPublisher:
        sinks: list[Sink] = []
        if settings.dir:
            sinks.append(DirSink(resolve(settings.dir)))
        if settings.webhook_url:
            sinks.append(WebhookSink(settings.webhook_url))
        if settings.syslog:
            sinks.append(SyslogSink(settings.syslog))
        if not sinks:
            raise ValueError("audit.anchors needs a dir, a webhook_url or a syslog URL")
        key = load_private_key(resolve(settings.key_file))
        if settings.public_key and public_key_text(key.public_key()) != settings.public_key.strip():
            raise ValueError("audit.anchors.public_key does not belong to the key in audit.anchors.key_file")
        return AnchorPublisher(engine, key, sinks, interval_s=settings.interval_s)

    def publish(self) -> int:
        """Publish every head that moved; the number published. Sink errors are logged, and
        the heads are offered again next time."""
        with self._lock:
            heads = [h for h in read_heads(self.engine) if self._published.get(h.chain_id) != (h.seq, h.hash)]
            if not heads:
                return 0
            now = datetime.now(UTC)
            signed = [sign_head(self.key, h, now) for h in heads]
            ok = True
            for sink in self.sinks:
                try:
                    sink(signed)
                except Exception as exc:  # one sink down must not stop the others
                    ok = False
                    self.failures += 1
                    log.warning("publishing %d chain heads to %s failed: %s", len(signed), sink, exc)
            if ok:
                self._published.update({h.chain_id: (h.seq, h.hash) for h in heads})
            return len(signed)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="warden-audit-anchors", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.publish()
            except Exception:  # the database is away: the next interval tries again
                log.exception("publishing chain heads failed")

    def close(self) -> None:
        """Stop, and publish the final heads (call after the audit writer has closed)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        try:
            self.publish()
        except Exception:
            log.exception("publishing the final chain heads failed")


# -- reading and checking ---------------------------------------------------------------------


@dataclass(slots=True)
class AnchorSet:
    anchors: list[Anchor] = field(default_factory=list)
    #: lines that are not anchors, or whose signature does not verify: (source, why)
    invalid: list[tuple[str, str]] = field(default_factory=list)
    sources: int = 0


def read_anchors(source: str, public_key: Ed25519PublicKey) -> AnchorSet:
    """Anchors from a folder of ``*.jsonl`` files, one file, or an ``http(s)://`` URL that
    serves JSONL (or ``{"anchors": [...]}``); each signature checked against ``public_key``."""
    out = AnchorSet()
    if source.startswith(("http://", "https://")):
        response = httpx.get(source, timeout=30.0)
        response.raise_for_status()
        out.sources = 1
        _parse(response.content, source, public_key, out)
        return out
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"no anchors at {source}")
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    for file in files:
        out.sources += 1
        _parse(file.read_bytes(), str(file), public_key, out)
    return out


def _parse(data: bytes, source: str, public_key: Ed25519PublicKey, out: AnchorSet) -> None:
    stripped = data.strip()
    if stripped.startswith(b"{") and b"\n" not in stripped:
        with contextlib.suppress(orjson.JSONDecodeError):
            doc = orjson.loads(stripped)
            if isinstance(doc, dict) and isinstance(doc.get("anchors"), list):
                for i, obj in enumerate(doc["anchors"], 1):
                    _one(obj, f"{source}#{i}", public_key, out)
                return
    for n, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{source}:{n}"
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            out.invalid.append((where, "not JSON"))
            continue
        _one(obj, where, public_key, out)


def _one(obj: Any, where: str, public_key: Ed25519PublicKey, out: AnchorSet) -> None:
    try:
        if not isinstance(obj, dict) or obj.get("v") != FORMAT:
            raise ValueError("not an anchor")
        sig = base64.b64decode(obj["sig"], validate=True)
        public_key.verify(sig, _payload(obj))
        anchor = Anchor(
            chain_id=str(obj["chain_id"]),
            kind=str(obj["kind"]),
            seq=int(obj["seq"]),
            hash=str(obj["hash"]),
            at=datetime.fromisoformat(obj["at"]),
            source=where,
        )
    except InvalidSignature:
        out.invalid.append((where, "signature does not verify with the configured public key"))
        return
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        out.invalid.append((where, f"not a valid anchor ({exc})"))
        return
    out.anchors.append(anchor)


@dataclass(frozen=True, slots=True)
class AnchorCheck:
    ok: bool
    anchors_read: int
    sources: int
    chains_anchored: int
    problems: tuple[Problem, ...]
    #: what anchors cannot cover (records after the newest head, chains never anchored)
    notes: tuple[str, ...]


def check_anchors(engine: Engine, anchors: AnchorSet, *, key: ChainKey | None = None) -> AnchorCheck:
    key = key if key is not None else ChainKey.from_env()
    report = Report(max_problems=1000)
    for where, why in anchors.invalid:
        report.add(ProblemKind.anchor_invalid, "", None, None, f"anchor {where}: {why}")
    by_chain: dict[str, list[Anchor]] = defaultdict(list)
    for a in anchors.anchors:
        by_chain[a.chain_id].append(a)
    tables = {spec.kind.value: spec.table for spec in KINDS}
    notes: list[str] = []
    with snapshot(engine) as conn:
        chains = load_chains(conn)
        checkpoints = load_checkpoints(conn, chains, key, Report(max_problems=0))
        for chain_id, items in sorted(by_chain.items()):
            items.sort(key=lambda a: (a.seq, a.at))
            table = tables.get(items[-1].kind)
            if table is None:
                notes.append(f"chain {chain_id}: anchors of unknown kind {items[-1].kind!r} not checked")
                continue
            cp = checkpoints.get(chain_id)
            _check_chain(conn, table, chain_id, items, chains.get(chain_id), cp, report)
        for chain_id, info in sorted(chains.items()):
            anchored = by_chain.get(chain_id)
            if not anchored:
                if info.last_seq > 0:
                    notes.append(f"chain {chain_id}: seq 1..{info.last_seq} not covered by any anchor")
                continue
            newest = max(anchored, key=lambda a: a.seq)
            if info.last_seq > newest.seq:
                notes.append(
                    f"chain {chain_id}: seq {newest.seq + 1}..{info.last_seq} written after its newest "
                    f"anchor ({newest.at:%Y-%m-%d %H:%M:%S}Z), not yet covered"
                )
    return AnchorCheck(
        ok=not report.problems,
        anchors_read=len(anchors.anchors),
        sources=anchors.sources,
        chains_anchored=len(by_chain),
        problems=tuple(report.problems),
        notes=tuple(notes),
    )


def _stored_hashes(conn: Any, table: Table, chain_id: str, seqs: Iterable[int]) -> dict[int, str]:
    wanted = sorted(set(seqs))
    out: dict[int, str] = {}
    for i in range(0, len(wanted), _PAGE):
        chunk = wanted[i : i + _PAGE]
        q = select(table.c.seq, table.c.hash).where(table.c.chain_id == chain_id, table.c.seq.in_(chunk))
        out.update({int(s): h for s, h in conn.execute(q)})
    return out


def _check_chain(
    conn: Any, table: Table, chain_id: str, items: list[Anchor], info: Any, cp: Any, report: Report
) -> None:
    cp_seq = cp.seq if cp is not None else 0
    stored = _stored_hashes(conn, table, chain_id, (a.seq for a in items if a.seq > cp_seq))
    newest = items[-1]
    last_good = cp_seq
    for a in items:
        if a.seq <= cp_seq:
            if a.seq == cp_seq and cp is not None and cp.hash != a.hash:
                report.add(
                    ProblemKind.anchor_mismatch, chain_id, a.seq, None,
                    f"chain {chain_id}: the prune checkpoint at seq {a.seq} does not have the hash "
                    f"published at {a.at:%Y-%m-%d %H:%M:%S}Z ({a.source})",
                )  # fmt: skip
                return
            continue
        h = stored.get(a.seq)
        if h is None:
            break  # missing: reported below, with the whole range
        if h != a.hash:
            report.add(
                ProblemKind.anchor_mismatch, chain_id, a.seq, None,
                f"chain {chain_id}: records seq {last_good + 1}..{a.seq} were rewritten: seq {a.seq} does "
                f"not have the hash published at {a.at:%Y-%m-%d %H:%M:%S}Z ({a.source})",
            )  # fmt: skip
            return
        last_good = a.seq
    if newest.seq <= cp_seq or newest.seq in stored:
        missing_between = [a.seq for a in items if a.seq > cp_seq and a.seq not in stored]
        if missing_between:
            first = missing_between[0]
            report.add(
                ProblemKind.anchor_missing, chain_id, first, None,
                f"chain {chain_id}: record seq {first}, covered by a published head, is missing",
            )  # fmt: skip
        return
    present = conn.execute(
        select(func.max(table.c.seq)).where(table.c.chain_id == chain_id, table.c.seq <= newest.seq)
    ).scalar()
    first_missing = max(int(present or 0), cp_seq, last_good) + 1
    head = "its head row is gone" if info is None else f"its head in the database says seq {info.last_seq}"
    report.add(
        ProblemKind.anchor_missing, chain_id, first_missing, None,
        f"chain {chain_id}: records seq {first_missing}..{newest.seq} are missing (deleted or rewound): "
        f"the head published at {newest.at:%Y-%m-%d %H:%M:%S}Z ({newest.source}) covers seq {newest.seq}; "
        f"{head}",
    )  # fmt: skip
