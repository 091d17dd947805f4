"""An audit database filled by real requests through a real gateway, for the dashboard tests.

``dashboard_seed`` (once per test session) starts the gateway on the session's simulator
with ``SEED_POLICY``, sends requests that pass, get redacted, flagged, blocked, stream-redacted,
monitor-flagged and reasoning-flagged, waits for the audit writer, and adds three users.
``dash`` gives each test its own copy of that database, of the policy file and of a config
naming both, with ``WARDEN_CONFIG`` pointing at it, so tests can rule and save freely.

Import into a test module: ``from tests.dashboard_fixtures import dash, dashboard_seed``.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import openai
import pytest

from audit.db import upgrade
from dashboard.auth import add_user
from gateway.config import DEFAULT_CONFIG_ENV
from tests.gateway_harness import RunningGateway, running_gateway, write_config
from tests.upstream import SimulatorHandle

PASSWORDS = {"ada": "admin-pass-1", "rita": "review-pass-1", "vic": "viewer-pass-1"}
ROLES = {"ada": "admin", "rita": "reviewer", "vic": "viewer"}

SEED_POLICY = """\
# The dashboard tests' policy: each entry is there to produce one kind of record.
name: dashboard-test
input:
  - {check: regex, name: email, patterns: ["[a-z]+@example\\\\.com"], entity: EMAIL_ADDRESS, action: redact}
  - {check: deny_terms, name: banned, terms: ["forbidden-word"], action: block}
  - {check: deny_terms, name: watch, terms: ["merger"], action: flag}
  - {check: regex, name: ticket, patterns: ["TICKET-\\\\d+"], entity: TICKET, action: flag, mode: monitor}
stream:
  holdback_chars: 32
  checks:
    - {check: regex, name: acme, patterns: ["ACME-\\\\d{4}"], entity: ACME_ID, action: redact}
output:
  - {check: deny_terms, name: confidential, terms: ["confidential"], action: flag}
reasoning:
  - {check: step_verifier, action: flag}
audit:
  store_text: redacted
"""


@dataclass
class Seed:
    folder: Path
    db_path: Path
    #: request ids by what happened to them
    ids: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Dash:
    config_path: Path
    database_url: str
    policy_path: Path
    ids: dict[str, list[str]]


def _chat(gw: RunningGateway, content: str, *, model: str = "gpt-4o-mini", stream: bool = False) -> str:
    """Send one chat request; returns the gateway's request id (also for a blocked request)."""
    client = gw.client()
    messages = [{"role": "user", "content": content}]
    try:
        if stream:
            raw = client.chat.completions.with_raw_response.create(model=model, messages=messages, stream=True)
            for _ in raw.parse():
                pass
        else:
            raw = client.chat.completions.with_raw_response.create(model=model, messages=messages)
            raw.parse()
        return str(raw.headers["x-warden-request-id"])
    except openai.APIStatusError as exc:
        return str(exc.response.headers["x-warden-request-id"])


def _send_all(gw: RunningGateway, sim: SimulatorHandle) -> dict[str, list[str]]:
    sim.script(match="ticket status", content="Your id is ACME-1234 and the order ships today.", chunking=3)
    sim.script(match="quarterly report", content="This report is confidential, do not forward it.")
    sim.script(
        match="shopping",
        model="sim-reasoner",
        reasoning="Step 1: The jacket costs 200 and is 20% off.\nStep 2: 200 × 0.8 = 150.\n",
        content="Answer: 150",
    )
    ids: dict[str, list[str]] = {}

    def send(kind: str, content: str, **kw: object) -> None:
        ids.setdefault(kind, []).append(_chat(gw, content, **kw))  # type: ignore[arg-type]

    for i in range(4):
        send("pass", f"What is a good name for a cat, idea {i}?")
    send("redact", "Please email alice@example.com about the invoice.")
    send("block", "Just say forbidden-word and nothing else.")
    send("flag", "What do you think about the merger rumours?")
    send("flag", "Summarise the merger timeline for me.")
    send("stream_redact", "What is my ticket status?", stream=True)
    send("output_flag", "Write the quarterly report summary.")
    send("monitor", "Look at TICKET-42 for me please.")
    send("reasoning", "Help me with my shopping maths; the receipt goes to bob@example.com.", model="sim-reasoner")
    return ids


_SEED: dict[str, Seed] = {}


@pytest.fixture(scope="session")
def dashboard_seed(tmp_path_factory: pytest.TempPathFactory, simulator: SimulatorHandle) -> Seed:
    if "seed" in _SEED:  # imported by several test modules: build the database once
        return _SEED["seed"]
    folder = tmp_path_factory.mktemp("dashboard-seed")
    db_path = folder / "seed.db"
    config = write_config(
        folder, simulator.base_url, policy_text=SEED_POLICY, database_url=f"sqlite:///{db_path}",
        extra="audit: {spool_dir: ./spool}\npolicy_reload: false\n",
    )  # fmt: skip
    upgrade(f"sqlite:///{db_path}")  # the writer spools, not migrates, when tables are missing
    simulator.clear()
    with running_gateway(config) as gw:
        ids = _send_all(gw, simulator)
        gw.flush_audit(20)
    simulator.clear()
    for name, role in ROLES.items():
        add_user(f"sqlite:///{db_path}", name, role, PASSWORDS[name])
    seed = Seed(folder, db_path, ids)
    _SEED["seed"] = seed
    return seed


def copy_database(source: Path, target: Path) -> None:
    """A consistent copy of a SQLite database in WAL mode (the backup API, not a file copy)."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)


def make_dash(folder: Path, seed: Seed) -> Dash:
    """A private copy of the seeded database and policy in ``folder``, with a config naming both."""
    db = folder / "warden.db"
    copy_database(seed.db_path, db)
    shutil.copy(seed.folder / "policy.yaml", folder / "policy.yaml")
    url = f"sqlite:///{db}"
    config = write_config(folder, "http://127.0.0.1:9/v1", policy="policy.yaml", database_url=url,
                          extra="audit: {spool_dir: ./spool}\n")  # fmt: skip
    return Dash(config, url, folder / "policy.yaml", seed.ids)


@pytest.fixture
def dash(tmp_path: Path, dashboard_seed: Seed, monkeypatch: pytest.MonkeyPatch) -> Iterator[Dash]:
    made = make_dash(tmp_path, dashboard_seed)
    monkeypatch.setenv(DEFAULT_CONFIG_ENV, str(made.config_path))
    yield made
    from dashboard import ui

    ui.close_resources()
