"""The admin API (``/v1/admin/...``): keys and policy versions for a fleet, with no file edits.

* ``POST /v1/admin/keys`` makes a key (the secret is in this one answer, stored as SHA-256),
  ``GET /v1/admin/keys`` lists config-file and database keys (never a secret or digest),
  ``DELETE /v1/admin/keys/{id}`` revokes one (a config-file key too, fleet-wide).
* ``GET /v1/admin/policies`` lists the policies this gateway serves with their stored
  versions, ``POST /v1/admin/policies/{name}/versions`` stores (and optionally activates) a
  new text, ``POST /v1/admin/policies/{name}/activate`` puts a stored version in force.

Every route needs an ``admin`` key. Every call, refused ones included, is an audit record
in this replica's chain (endpoint, key id, action, target; no secret). Database work runs in
a worker thread. Replicas learn of changes through ``gateway.fleet`` within a poll interval;
the replica that made one applies it at once.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from audit import fleet as store
from audit.record import AuditRecord, Stage, Status, StepRecord, Verdict
from gateway.audit_api import STARTING_WAIT_S
from gateway.auth import Principal
from gateway.errors import AuditUnavailable, BadRequest, NotFound, WardenError, http_status
from policies.loader import load_policy_text
from policies.yamlio import YamlModelError

if TYPE_CHECKING:
    from gateway.service import Gateway


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class NewKey(_Body):
    tenant: str = Field(min_length=1, max_length=256)
    role: str = Field(default="client", pattern="^(client|reviewer|admin)$")
    policy: str | None = Field(default=None, min_length=1, description="a policy name this gateway serves")
    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)
    id: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    note: str | None = Field(default=None, max_length=2000)


class NewVersion(_Body):
    yaml: str = Field(min_length=1, max_length=1_000_000)
    note: str | None = Field(default=None, max_length=2000)
    activate: bool = False


class Activate(_Body):
    version: str = Field(min_length=1, max_length=128)
    note: str | None = Field(default=None, max_length=2000)


def parse(model: type[_Body], body: dict[str, Any]) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise BadRequest(f"Invalid request: '{loc or 'body'}': {err['msg']}", param=loc or None) from None


class Conflict(BadRequest):
    status = 409
    code = "conflict"


async def engine_of(gw: Gateway) -> Any:
    """The audit database (keys and versions live there); 503 while it cannot be used."""
    engine = gw.audit.engine
    wait_started = getattr(gw.audit, "wait_started", None)
    if engine is None and wait_started is not None:
        await asyncio.to_thread(wait_started, STARTING_WAIT_S)
        engine = gw.audit.engine
    if gw.audit.state == "failed" or engine is None:
        raise AuditUnavailable(f"The admin API needs the audit database, which is {gw.audit.state}.")
    return engine


def record_action(
    gw: Gateway,
    who: Principal,
    *,
    request_id: str,
    endpoint: str,
    action: str,
    detail: dict[str, Any],
    error: WardenError | None,
    client_addr: str | None,
) -> None:
    """The audit record of one admin or audit-API call (this replica's chain)."""
    record = admin_record(
        tenant=who.tenant,
        key_id=who.key_id,
        request_id=request_id,
        endpoint=endpoint,
        action=action,
        detail=detail,
        error=error,
        client_addr=client_addr,
    )
    gw.audit.submit(record)


def admin_record(
    *,
    tenant: str,
    key_id: str,
    request_id: str,
    endpoint: str,
    action: str,
    detail: dict[str, Any],
    error: WardenError | None = None,
    client_addr: str | None = None,
) -> AuditRecord:
    """An administrative action as an audit record: one ``admin`` step with what was done."""
    now = datetime.now(UTC)
    verdict = Verdict.error if error is not None else Verdict.passed
    record = AuditRecord(
        request_id=request_id,
        started_at=now,
        tenant=tenant,
        key_id=key_id,
        endpoint=endpoint,
        model_requested="",
        stream=False,
        policy_name="(admin)",
        policy_version="",
        client_addr=client_addr,
        finished_at=now,
        verdict=verdict,
        status=Status.ok if error is None else Status.error,
        http_status=200 if error is None else http_status(error),
        error=error.message[:2000] if error is not None else None,
        latency_ms=0.0,
    )
    step = StepRecord(1, Stage.response, "admin", verdict, detail={"action": action, **detail}, at=now)
    record.steps.append(step)
    return record


# -- keys ----------------------------------------------------------------------------------


async def create_key(gw: Gateway, who: Principal, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    req: NewKey = parse(NewKey, body)
    if req.policy is not None and gw.fleet.policy_path(req.policy) is None:
        served = sorted({p.name for p in gw.policies.all()})
        raise BadRequest(f"Unknown policy '{req.policy}'; this gateway serves {served}.", param="policy")
    engine = await engine_of(gw)
    try:
        secret, rec = await asyncio.to_thread(
            store.create_key,
            engine,
            tenant=req.tenant,
            role=req.role,
            policy=req.policy,
            rpm=req.rpm,
            tpm=req.tpm,
            key_id=req.id,
            created_by=who.key_id,
            note=req.note,
            taken_ids=gw.keys.config_ids(),
            taken_digests=gw.keys.config_digests(),
        )
    except store.FleetError as exc:
        raise Conflict(str(exc), param="id") from None
    await asyncio.to_thread(gw.fleet.poll, engine)  # usable on this replica at once
    detail = {"key_id": rec.key_id, "tenant": rec.tenant, "role": rec.role, "policy": rec.policy}
    return {**rec.public(), "key": secret}, detail


async def list_keys(gw: Gateway) -> dict[str, Any]:
    engine = await engine_of(gw)
    stored = await asyncio.to_thread(store.list_keys, engine)
    by_id = {r.key_id: r for r in stored}
    data: list[dict[str, Any]] = []
    for key_id in sorted(gw.keys.config_ids()):
        found = gw.keys.config_key(key_id)
        assert found is not None
        _, p = found
        revoked = by_id.pop(key_id, None)
        data.append(
            {
                "id": key_id,
                "object": "api_key",
                "tenant": p.tenant,
                "role": p.role,
                "policy": p.policy,
                "rpm": p.rpm,
                "tpm": p.tpm,
                "source": "config",
                "revoked_at": revoked.public()["revoked_at"] if revoked else None,
                "revoked_by": revoked.revoked_by if revoked else None,
            }
        )
    data.extend(r.public() for r in by_id.values())
    return {"object": "list", "data": data}


async def revoke_key(gw: Gateway, who: Principal, key_id: str) -> dict[str, Any]:
    engine = await engine_of(gw)
    found = gw.keys.config_key(key_id)
    config_key = (found[0], found[1].tenant, found[1].role) if found else None
    rec = await asyncio.to_thread(store.revoke_key, engine, key_id, by=who.key_id, config_key=config_key)
    if rec is None:
        raise NotFound(f"No key with id '{key_id}'.", param="id")
    await asyncio.to_thread(gw.fleet.poll, engine)  # refused on this replica at once
    return {**rec.public(), "source": "config" if found else "database", "revoked": True}


# -- policies ------------------------------------------------------------------------------


async def list_policies(gw: Gateway) -> dict[str, Any]:
    engine = await engine_of(gw)
    active = await asyncio.to_thread(store.active_versions, engine)
    data = []
    for path in gw.policies.paths():
        running = gw.policies.get(path)
        stored = await asyncio.to_thread(store.versions, engine, running.name)
        act = active.get(running.name)
        data.append(
            {
                "name": running.name,
                "object": "policy",
                "path": str(path),
                "running_version": running.version,
                "activated_version": act.version_hash if act else None,
                "activated_at": act.activated_at.isoformat() if act else None,
                "versions": [
                    {
                        "version": v.version_hash,
                        "created_at": v.created_at.isoformat(),
                        "created_by": v.created_by,
                        "note": v.note,
                        "running": v.version_hash == running.version,
                    }
                    for v in stored
                ],
            }
        )
    return {"object": "list", "data": data}


def _served(gw: Gateway, name: str) -> None:
    if not any(p.name == name for p in gw.policies.all()):
        raise NotFound(f"This gateway serves no policy named '{name}'.", param="name")


async def save_version(gw: Gateway, who: Principal, name: str, body: dict[str, Any]) -> dict[str, Any]:
    req: NewVersion = parse(NewVersion, body)
    _served(gw, name)
    try:
        compiled = load_policy_text(req.yaml, f"{name} (admin API)")
    except YamlModelError as exc:
        raise BadRequest(f"Invalid policy: {exc}", param="yaml") from None
    if compiled.name != name:
        raise BadRequest(f"The text is policy '{compiled.name}', not '{name}'.", param="yaml")
    engine = await engine_of(gw)
    version, created = await asyncio.to_thread(
        store.save_version,
        engine,
        name=name,
        version_hash=compiled.version,
        yaml_text=req.yaml,
        created_by=who.key_id,
        note=req.note,
    )
    out: dict[str, Any] = {"name": name, "version": version.version_hash, "created": created, "active": False}
    if req.activate:
        activation = await asyncio.to_thread(
            store.activate, engine, name, compiled.version, by=who.key_id, note=req.note
        )
        gw.fleet.apply_now(activation, compiled)
        out.update(active=True, activated_at=activation.activated_at.isoformat())
    return out


async def activate(gw: Gateway, who: Principal, name: str, body: dict[str, Any]) -> dict[str, Any]:
    req: Activate = parse(Activate, body)
    _served(gw, name)
    engine = await engine_of(gw)
    version = await asyncio.to_thread(store.find_version, engine, name, req.version)
    if version is None:
        raise NotFound(f"Policy '{name}' has no stored version '{req.version}'.", param="version")
    try:  # checks may have changed since the version was stored: it must still load
        compiled = load_policy_text(version.yaml_text, f"{name} (version {req.version})")
    except YamlModelError as exc:
        raise Conflict(f"Version {req.version} no longer loads: {exc}", param="version") from None
    activation = await asyncio.to_thread(store.activate, engine, name, req.version, by=who.key_id, note=req.note)
    gw.fleet.apply_now(activation, compiled)
    return {"name": name, "version": req.version, "active": True, "activated_at": activation.activated_at.isoformat()}
