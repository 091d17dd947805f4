"""How a replica follows the fleet: keys and active policy versions, polled from the database.

Every ``fleet.poll_s`` seconds (default 1) a thread asks the audit database two cheap
questions: did any key row change (``count(*)``, ``max(updated_at)``: an index-only read),
and are there policy activations newer than the last one seen (one index probe). Only when
the answer is yes does it read more. So a key created or revoked through the admin API on
one replica works, or stops working, on every replica within about a poll interval, and a
policy version activated once is in force everywhere as quickly.

Policy files and activations: whichever happened last is in force. At start a replica
serves an activated version only when it was activated after the file was last written;
later a file edit (hot reload) and an activation each replace what runs.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from policies.compiled import CompiledPolicy
from policies.loader import load_policy_text
from policies.yamlio import YamlModelError

if TYPE_CHECKING:
    from audit.fleet import Activation
    from gateway.service import Gateway

log = logging.getLogger("warden.fleet")


class FleetSync:
    def __init__(self, gateway: Gateway) -> None:
        self._gw = gateway
        self._interval = gateway.config.fleet.poll_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._keys_marker: tuple[int, Any] | None = None
        self._last_activation = 0
        self._started_at = datetime.now(UTC)
        self.polls = 0
        self.last_error: str | None = None
        self._lock = threading.Lock()  # the thread and an admin call that polls at once

    def start(self) -> None:
        if self._interval > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="warden-fleet", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self._interval if self.polls else 0.05):
            engine = self._gw.audit.engine
            if engine is None:  # the audit writer is still connecting, or auditing is off
                continue
            try:
                self.poll(engine)
                self.last_error = None
            except Exception as exc:  # the database is down or behind: keep what we have
                if self.last_error is None:
                    log.warning("fleet poll failed, keeping current keys and policies: %s", exc)
                self.last_error = f"{type(exc).__name__}: {exc}"

    def poll(self, engine: Any) -> None:
        """One round: reload keys if they changed, apply new activations."""
        with self._lock:
            self._poll(engine)

    def _poll(self, engine: Any) -> None:
        from audit import fleet as store  # SQLAlchemy's models load off the start-up path

        marker = store.keys_marker(engine)
        if marker != self._keys_marker:
            self._gw.keys.set_database_keys(store.list_keys(engine), self.policy_path)
            self._keys_marker = marker
        first = self._last_activation == 0
        for activation in store.activations_after(engine, self._last_activation):
            self._apply(engine, activation, only_if_newer_than_file=first)
            self._last_activation = max(self._last_activation, activation.id)
        self.polls += 1

    def policy_path(self, name: str) -> str | None:
        """The file this gateway serves the named policy from (DB keys name policies)."""
        for path in self._gw.policies.paths():
            if self._gw.policies.get(path).name == name:
                return str(path)
        return None

    def _apply(self, engine: Any, activation: Activation, *, only_if_newer_than_file: bool) -> None:
        for path in self._gw.policies.paths():
            running = self._gw.policies.get(path)
            if running.name != activation.name or running.version == activation.version_hash:
                continue
            if only_if_newer_than_file and _mtime(path) >= activation.activated_at:
                continue  # the file was written after the activation: the file wins
            compiled = self._load(engine, activation, path)
            if compiled is not None:
                self._gw.policies.install(path, compiled)

    def apply_now(self, activation: Activation, compiled: CompiledPolicy) -> None:
        """This replica activated a version itself: serve it at once, not at the next poll."""
        for path in self._gw.policies.paths():
            if self._gw.policies.get(path).name == activation.name:
                self._gw.policies.install(path, compiled)

    @staticmethod
    def _load(engine: Any, activation: Activation, path: Path) -> CompiledPolicy | None:
        from audit import fleet as store

        version = store.find_version(engine, activation.name, activation.version_hash)
        if version is None:
            log.error("activated policy %s version %s is not stored", activation.name, activation.version_hash)
            return None
        try:
            return load_policy_text(version.yaml_text, f"{path} (version {version.version_hash})")
        except YamlModelError as exc:
            log.error(
                "activated policy %s version %s does not load here:\n%s", activation.name, version.version_hash, exc
            )
            return None


def _mtime(path: Path) -> datetime:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except OSError:
        return datetime.min.replace(tzinfo=UTC)
