"""Hot reload: the running set of policies, swapped atomically when a file changes.

A ``PolicyStore`` holds the last good ``CompiledPolicy`` for each policy file. A watcher
thread (watchfiles, inotify) reloads a file when it changes; an edit that does not load
is logged with its errors and the previous version keeps serving. Readers never lock:
they read one dict entry, which is replaced whole.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from policies.compiled import CompiledPolicy
from policies.loader import load_policy
from policies.yamlio import YamlModelError

log = logging.getLogger("warden.policy")


class PolicyStore:
    def __init__(self, paths: Iterable[Path], on_load: Callable[[CompiledPolicy], None] | None = None) -> None:
        self._policies: dict[Path, CompiledPolicy] = {}
        self._on_load = on_load
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        for path in paths:
            self._policies[path.resolve()] = load_policy(path.resolve())  # startup errors are fatal

    def get(self, path: Path) -> CompiledPolicy:
        return self._policies[path]

    def all(self) -> list[CompiledPolicy]:
        return list(self._policies.values())

    def reload(self, path: Path) -> bool:
        """Reload one file; False (and the old version kept) when the new one is invalid."""
        try:
            compiled = load_policy(path)
        except YamlModelError as exc:
            log.error("policy %s rejected, keeping version %s:\n%s", path, self._policies[path].version, exc)
            return False
        if compiled.version != self._policies[path].version:
            self._policies[path] = compiled
            log.info("policy %s reloaded: %s version %s", path, compiled.name, compiled.version)
            if self._on_load:
                self._on_load(compiled)
        return True

    def paths(self) -> list[Path]:
        return list(self._policies)

    def install(self, path: Path, compiled: CompiledPolicy) -> None:
        """Serve ``compiled`` for ``path`` from now on (a version activated in the database);
        the file takes over again when it next changes."""
        if compiled.version != self._policies[path].version:
            self._policies[path] = compiled
            log.info("policy %s now runs %s version %s (activated)", path, compiled.name, compiled.version)
            if self._on_load:
                self._on_load(compiled)

    def watch(self) -> None:
        """Start the watcher thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="warden-policy-watch", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        from watchfiles import watch

        folders = {p.parent for p in self._policies}
        for changes in watch(*folders, stop_event=self._stop, debounce=200, step=50, rust_timeout=500):
            changed = {Path(p).resolve() for _, p in changes}
            for path in self._policies:
                if path in changed:
                    self.reload(path)
