"""Hot reload: the running set of policies, swapped atomically when a file changes.

A ``PolicyStore`` holds the last good ``CompiledPolicy`` for each policy file. A watcher
thread reloads a file when it changes; an edit that does not load is logged with its errors
and the previous version keeps serving. Readers never lock: they read one dict entry, which is
replaced whole.

``FileWatch`` watches the policy files themselves, never their folder: a SQLite database,
its WAL and the logs that often sit beside a policy file change all the time, and a folder
watch woke the gateway (and logged watchfiles' "1 change detected") on every audit write.
A file is known by its (inode, size, mtime) signature: inotify events on the files wake the
loop at once, and a short timeout re-checks the signatures, which also covers what a file
watch alone misses: an editor or the dashboard replacing the file (``os.replace`` gives it a
new inode, so the watch is re-armed on the new one) and a file that is briefly missing.
A reload is logged once, by the store; the watcher's own per-event log lines are silenced.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from policies.compiled import CompiledPolicy
from policies.loader import load_policy
from policies.yamlio import YamlModelError

log = logging.getLogger("warden.policy")
# watchfiles logs every batch of raw events at INFO; the store logs the reload that matters.
logging.getLogger("watchfiles.main").setLevel(logging.WARNING)

Signature = tuple[int, int, int, int] | None
#: how often signatures are re-checked without an event (and a vanished file looked for), seconds
RECHECK_S = 0.5


def signature(path: Path) -> Signature:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class FileWatch:
    """Calls ``on_change(path)`` once for each change of one of ``paths`` (and only of those)."""

    def __init__(self, paths: Iterable[Path], on_change: Callable[[Path], object], stop: threading.Event) -> None:
        self.paths = tuple(dict.fromkeys(p.resolve() for p in paths))
        self._on_change = on_change
        self._stop = stop
        self._seen = {p: signature(p) for p in self.paths}

    def run(self) -> None:
        from watchfiles import watch

        while not self._stop.is_set():
            present = [p for p in self.paths if self._seen[p] is not None]
            if not present:  # nothing to watch yet: look for the files again shortly
                self._stop.wait(RECHECK_S)
                self._check()
                continue
            rearm = False
            for _ in watch(
                *present,
                stop_event=self._stop,
                debounce=50,
                step=20,
                rust_timeout=int(RECHECK_S * 1000),
                yield_on_timeout=True,
                recursive=False,
            ):
                rearm = self._check()
                if rearm:
                    break
            if not rearm:
                return  # the stop event ended the watch

    def _check(self) -> bool:
        """Fire for changed files; True when a file was replaced or appeared (re-arm the watch)."""
        rearm = False
        for path in self.paths:
            now, before = signature(path), self._seen[path]
            if now == before:
                continue
            self._seen[path] = now
            if now is None or before is None or now[:2] != before[:2]:
                rearm = True
            if now is not None:
                try:
                    self._on_change(path)
                except Exception:  # a failing callback must not end the watch
                    log.exception("reloading %s failed", path)
        return rearm


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

    def items(self) -> list[tuple[Path, CompiledPolicy]]:
        return list(self._policies.items())

    def on_load(self, callback: Callable[[CompiledPolicy], None]) -> None:
        """Call ``callback`` with each newly loaded version (the gateway's heartbeat uses it)."""
        self._on_load = callback

    def reload(self, path: Path) -> bool:
        """Reload one file; False (and the old version kept) when the new one is invalid."""
        try:
            compiled = load_policy(path)
        except YamlModelError as exc:
            log.error("policy %s rejected, keeping version %s:\n%s", path, self._policies[path].version, exc)
            return False
        except OSError as exc:  # replaced or removed between the event and the read
            log.warning("policy %s unreadable, keeping version %s: %s", path, self._policies[path].version, exc)
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
        FileWatch(self._policies, self.reload, self._stop).run()
