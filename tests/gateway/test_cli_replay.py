"""``warden policy replay`` and the progress of the long audit commands, through the real
``warden`` entry point on a SQLite database filled by real gateway requests."""

from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from audit.write.writer import AuditWriter
from tests.audit_db import make_record
from tests.gateway_harness import running_gateway, write_config
from tests.upstream import SimulatorHandle

RUNNING = """
name: cli
input:
  - {check: regex, patterns: ["ACME-\\\\d{4}"], entity: TICKET, action: redact}
  - {check: regex, name: banned, patterns: ["forbidden-word"], action: block}
"""
# The edit: no more "banned" (one request gets looser), and "hi" now blocks (five get stricter).
EDITED = """
name: cli
input:
  - {check: regex, patterns: ["ACME-\\\\d{4}"], entity: TICKET, action: redact}
  - {check: regex, name: greeting, patterns: ["\\\\bhi\\\\b"], action: block}
"""
DEAD_PG = "postgresql+psycopg://postgres@127.0.0.1:1/test"  # nothing listens on port 1


def warden(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}  # rich wraps a table to the terminal's width
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True, check=False, env=env
    )


def warden_on_a_terminal(*args: str) -> tuple[int, str, str]:
    """Run with stderr on a pseudo-terminal, where the progress display shows; (code, stdout, tty)."""
    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "120"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", *args], stdout=subprocess.PIPE, stderr=slave, text=True, env=env
    )
    os.close(slave)
    shown = bytearray()
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    assert proc.stdout is not None
    out = proc.stdout.read()
    return proc.wait(), out, shown.decode(errors="replace")


@pytest.fixture(scope="module")
def filled(simulator: SimulatorHandle, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("replay")
    config = write_config(folder, simulator.base_url, policy_text=RUNNING, database_url="sqlite:///./replay.db")
    with running_gateway(config) as gw:
        client = gw.client()
        for i in range(5):
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": f"hi ACME-000{i}"}]
            )
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "good morning"}])
        with pytest.raises(Exception, match="policy"):
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "forbidden-word"}]
            )
        gw.flush_audit()
    (folder / "edited.yaml").write_text(EDITED.lstrip(), encoding="utf-8")
    return config


def test_replay_lists_the_verdicts_that_change(filled: Path) -> None:
    done = warden("policy", "replay", str(filled.parent / "edited.yaml"), "--config", str(filled), "--json")
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    # the running policy is found in the config by the edited policy's name
    assert body["running"]["path"] == str(filled.parent / "policy.yaml")
    assert (body["replayed"], body["changed"], body["stricter"], body["looser"]) == (7, 6, 5, 1)
    changes = {(c["input"]["before"], c["input"]["after"]) for c in body["changes"]}
    assert changes == {("pass", "block"), ("block", "pass")}
    [looser] = [c for c in body["changes"] if not c["stricter"]]
    assert looser["recorded"] == "block" and looser["prompt"] == "forbidden-word"
    stricter = [c for c in body["changes"] if c["stricter"]]
    assert all(c["decided_by"] == "input/greeting" and c["fired"] == ["input/greeting: block"] for c in stricter)
    # stored text is the redacted one: the ticket number itself is never replayed or printed
    assert "ACME-0" not in done.stdout


def test_replay_prints_a_table(filled: Path) -> None:
    done = warden("policy", "replay", str(filled.parent / "edited.yaml"), "--config", str(filled))
    assert done.returncode == 0, done.stderr
    assert "7 requests replayed: 6 verdicts change (5 stricter, 1 looser)" in done.stdout
    assert "Verdicts that change" in done.stdout
    assert "block → pass" in done.stdout and "pass → block" in done.stdout
    assert "forbidden-word" in done.stdout


def test_replay_filters_like_export(filled: Path) -> None:
    edited = str(filled.parent / "edited.yaml")
    blocked = json.loads(warden("policy", "replay", edited, "-c", str(filled), "--verdict", "block", "--json").stdout)
    assert (blocked["replayed"], blocked["changed"]) == (1, 1)
    found = json.loads(warden("policy", "replay", edited, "-c", str(filled), "--text", "morning", "--json").stdout)
    assert (found["replayed"], found["changed"]) == (1, 0)
    newest = json.loads(warden("policy", "replay", edited, "-c", str(filled), "--limit", "2", "--json").stdout)
    assert newest["replayed"] == 2
    nobody = warden("policy", "replay", edited, "-c", str(filled), "--tenant", "nobody")
    assert nobody.returncode == 0
    assert "no stored request matches" in nobody.stdout


def test_replay_against_a_named_file(filled: Path) -> None:
    edited = str(filled.parent / "edited.yaml")
    same = json.loads(warden("policy", "replay", edited, "-c", str(filled), "--against", edited, "--json").stdout)
    assert (same["replayed"], same["changed"]) == (7, 0)


def test_replay_bad_inputs_say_what_is_wrong(filled: Path, tmp_path: Path) -> None:
    edited = str(filled.parent / "edited.yaml")
    missing = warden("policy", "replay", str(tmp_path / "nope.yaml"), "-c", str(filled))
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: cli\ninput:\n  - {check: no_such_check}\n")
    invalid = warden("policy", "replay", str(broken), "-c", str(filled))
    assert invalid.returncode == 2 and f"invalid policy {broken}" in invalid.stderr and ":3" in invalid.stderr
    against = warden("policy", "replay", edited, "-c", str(filled), "--against", str(broken))
    assert against.returncode == 2 and "invalid running policy" in against.stderr
    verdict = warden("policy", "replay", edited, "-c", str(filled), "--verdict", "maybe")
    assert verdict.returncode == 2 and "--verdict must be one of" in verdict.stderr
    limit = warden("policy", "replay", edited, "-c", str(filled), "--limit", "0")
    assert limit.returncode == 2
    empty = write_config(tmp_path / "empty", "http://127.0.0.1:9/v1", policy_text=RUNNING)
    no_tables = warden("policy", "replay", edited, "-c", str(empty))
    assert no_tables.returncode == 2 and "cannot read the audit database" in no_tables.stderr
    assert "Traceback" not in no_tables.stderr


def test_progress_shows_on_a_terminal_only(filled: Path, tmp_path: Path) -> None:
    code, out, shown = warden_on_a_terminal("audit", "verify", "--config", str(filled))
    assert code == 0 and "7 records" in out
    assert "7 records checked" in shown
    code, out, shown = warden_on_a_terminal("policy", "replay", str(filled.parent / "edited.yaml"), "-c", str(filled))
    assert code == 0 and "7/7" in shown
    assert "records checked" not in warden("audit", "verify", "--config", str(filled)).stderr  # not in a pipe


def test_prune_shows_its_progress(filled: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(filled.parent, copy)
    code, _, shown = warden_on_a_terminal(
        "audit", "prune", "--before", "2999-01-01", "--config", str(copy / "warden.yaml")
    )
    assert code == 0, shown
    assert "7 records deleted" in shown
    assert warden("audit", "verify", "--config", str(copy / "warden.yaml")).returncode == 0


def test_replay_spool_shows_its_progress(filled: Path, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    dead = AuditWriter(DEAD_PG, spool_dir=spool)  # the database is down: records go to the spool
    dead.start()
    for i in range(3):
        dead.submit(make_record(i, steps=3))
    assert dead.flush(30)
    dead.close()
    copy = tmp_path / "copy"
    shutil.copytree(filled.parent, copy)
    code, out, shown = warden_on_a_terminal("audit", "replay-spool", str(spool), "--config", str(copy / "warden.yaml"))
    assert code == 0, shown
    assert "3 spooled records replayed" in shown
    assert "inserted=3" in out
