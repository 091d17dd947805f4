"""Hot reload watches only the policy files in use: a database and logs beside them change nothing,
and a reload is logged once, without the watcher's own chatter."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from policies.reload import FileWatch, PolicyStore

POLICY = 'name: {name}\ninput:\n  - {{check: deny_terms, terms: ["{term}"], action: block}}\n'


def _replace(path: Path, text: str) -> None:
    """Write the way the dashboard and most editors do: a new file renamed over the old one."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _wait(predicate: object, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return True
        time.sleep(0.02)
    return False


def _busy_database(folder: Path, stop: threading.Event) -> threading.Thread:
    """A SQLite database in WAL mode and a log file beside the policy, written all the time."""

    def run() -> None:
        conn = sqlite3.connect(folder / "warden.db")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE IF NOT EXISTS t (x)")
        with (folder / "gateway.log").open("a") as log:
            while not stop.is_set():
                conn.execute("INSERT INTO t VALUES (1)")
                conn.commit()
                log.write("line\n")
                log.flush()
                time.sleep(0.005)
        conn.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def busy_folder(tmp_path: Path) -> Iterator[Path]:
    stop = threading.Event()
    thread = _busy_database(tmp_path, stop)
    yield tmp_path
    stop.set()
    thread.join(5)


def test_only_the_policy_files_fire(busy_folder: Path) -> None:
    policy = busy_folder / "policy.yaml"
    policy.write_text("a")
    fired: list[str] = []
    stop = threading.Event()
    watch = FileWatch([policy], lambda p: fired.append(p.read_text()), stop)
    thread = threading.Thread(target=watch.run, daemon=True)
    thread.start()
    try:
        time.sleep(1.0)  # the database and the log change hundreds of times meanwhile
        assert fired == []
        _replace(policy, "b")
        assert _wait(lambda: fired == ["b"])
        policy.write_text("cc")  # an in-place write on the new inode (the watch was re-armed)
        assert _wait(lambda: fired == ["b", "cc"])
        policy.unlink()
        time.sleep(0.3)
        policy.write_text("ddd")  # deleted and created again
        assert _wait(lambda: fired == ["b", "cc", "ddd"])
        time.sleep(0.6)
        assert fired == ["b", "cc", "ddd"], "each change fires once"
    finally:
        stop.set()
        thread.join(3)
    assert not thread.is_alive()


def test_a_reload_is_logged_once_and_the_watcher_is_quiet(busy_folder: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="watchfiles")
    caplog.set_level(logging.INFO, logger="warden.policy")
    policy = busy_folder / "policy.yaml"
    policy.write_text(POLICY.format(name="first", term="a"))
    loaded: list[str] = []
    store = PolicyStore([policy], on_load=lambda p: loaded.append(p.name))
    store.watch()
    try:
        time.sleep(0.8)
        _replace(policy, POLICY.format(name="second", term="b"))
        assert _wait(lambda: loaded == ["second"])
        _replace(policy, "name: broken\ninput:\n  - {check: no_such_check}\n")
        assert _wait(lambda: any("rejected" in r.getMessage() for r in caplog.records))
        time.sleep(0.6)
    finally:
        store.stop()
    assert store.get(policy.resolve()).name == "second"  # the last good version keeps serving
    messages = [r.getMessage() for r in caplog.records]
    assert sum("reloaded" in m for m in messages) == 1
    assert sum("rejected" in m for m in messages) == 1
    assert not [r for r in caplog.records if r.name.startswith("watchfiles") and r.levelno < logging.WARNING]
