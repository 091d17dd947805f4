"""The spool: an append-only, fsynced JSON-lines file of records waiting for the database.

Each writer owns one file, ``spool-<chain_id>.jsonl`` in the spool folder, and holds an
exclusive ``flock`` on it for its lifetime. A file nobody holds a lock on belongs to a writer
that is gone (a crash, a SIGKILL, a shutdown while the database was down): any writer, or
``warden audit replay-spool``, may take it over and replay it.

An ``append`` returns only after ``fdatasync``: from then on the records survive the process
being killed. Lines hold *unlinked* records (no chain fields): they are linked when they are
finally committed. A torn last line (the process died mid-write, before the append returned)
is skipped; it was never acknowledged.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from audit.write.prepared import Prepared

log = logging.getLogger("warden.audit")

SPOOL_GLOB = "spool-*.jsonl"


@dataclass(frozen=True, slots=True)
class Entry:
    """One line read back: the item, or why it could not be read, and where the next starts."""

    item: Prepared | None
    raw: bytes
    error: str | None
    end: int


class Spool:
    """One spool file, locked by its owner. Appends are thread-safe."""

    def __init__(self, path: Path, *, take_over: bool = False) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        existed = path.exists()
        self._fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        if not existed:
            _fsync_dir(path.parent)  # so the new file's name survives a power cut too
        flags = fcntl.LOCK_EX | (fcntl.LOCK_NB if take_over else 0)
        try:
            fcntl.flock(self._fd, flags)
        except BlockingIOError:
            os.close(self._fd)
            raise
        self._lock = threading.Lock()
        self._size = os.fstat(self._fd).st_size
        #: where replay has got to: everything before it is in the database
        self.offset = 0

    @staticmethod
    def try_take_over(path: Path) -> Spool | None:
        """Lock an orphaned spool file, or ``None`` when its writer is alive or it is gone."""
        try:
            spool = Spool(path, take_over=True)
        except (BlockingIOError, FileNotFoundError):
            return None
        if os.fstat(spool._fd).st_nlink == 0:  # replayed and unlinked by someone else meanwhile
            spool.close()
            return None
        return spool

    @property
    def pending(self) -> bool:
        return self._size > self.offset

    def append(self, items: Sequence[Prepared]) -> None:
        data = b"".join(i.spool_line() for i in items)
        with self._lock:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
            os.fdatasync(self._fd)
            self._size += len(data)

    def read(self, max_items: int) -> Iterator[Entry]:
        """Entries from ``offset`` on; ``offset`` moves only when the caller calls ``advance``."""
        pos = self.offset
        with open(self.path, "rb") as f:
            f.seek(pos)
            for _ in range(max_items):
                line = f.readline()
                if not line.endswith(b"\n"):
                    return  # end of file, or a torn line that was never acknowledged
                pos += len(line)
                try:
                    yield Entry(Prepared.from_line(line), line, None, pos)
                except (ValueError, KeyError, TypeError, AttributeError) as exc:
                    yield Entry(None, line, f"{type(exc).__name__}: {exc}", pos)

    def advance(self, offset: int) -> None:
        self.offset = offset

    def truncate_if_done(self) -> bool:
        """Empty the file if everything in it has been replayed; False if more was appended."""
        with self._lock:
            size = os.fstat(self._fd).st_size
            if self.offset < size:
                whole = self._whole_lines_end(size)
                if self.offset < whole:
                    self._size = size
                    return False
            os.ftruncate(self._fd, 0)
            os.fsync(self._fd)
            self._size = self.offset = 0
            return True

    def _whole_lines_end(self, size: int) -> int:
        """Offset after the last complete line (a torn tail is ignored)."""
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            tail = f.read(size - self.offset)
        return self.offset + tail.rfind(b"\n") + 1

    def close(self, *, remove_if_empty: bool = True) -> None:
        if self._fd < 0:
            return
        with suppress(OSError):
            if remove_if_empty and os.fstat(self._fd).st_size == 0:
                self.path.unlink(missing_ok=True)
        os.close(self._fd)  # releases the flock
        self._fd = -1

    def remove(self) -> None:
        """Delete a fully replayed, taken-over file (while still holding its lock)."""
        self.path.unlink(missing_ok=True)
        self.close(remove_if_empty=False)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def orphans(spool_dir: Path, own: Path | None = None) -> list[Path]:
    if not spool_dir.is_dir():
        return []
    return sorted(p for p in spool_dir.glob(SPOOL_GLOB) if p != own)


def dead_letter(path: Path, raw: bytes | None, item: object, error: str) -> None:
    """Keep what could not be stored, with the reason, rather than lose it."""
    entry: dict[str, Any] = {"error": error}
    if isinstance(item, Prepared):
        entry["item"] = orjson.loads(item.spool_line())
    elif item is not None:
        entry["repr"] = repr(item)
    if raw is not None:
        entry["raw"] = raw.decode("utf-8", "replace")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, orjson.dumps(entry, default=str) + b"\n")
        os.fdatasync(fd)
    finally:
        os.close(fd)
    log.error("audit item kept in %s, not stored: %s", path, error)
