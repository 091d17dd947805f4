"""The NATS JetStream audit sink: gateways publish, ``warden audit writer`` processes drain into
PostgreSQL in chain order, exactly once, through crashes and restarts.

Real servers only: a ``nats-server -js`` of each test's own on a free loopback port, and a fresh
schema on the real PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from audit.chain import ChainKey
from audit.db import make_engine, upgrade
from audit.read.verify import verify
from audit.settings import BrokerSettings
from audit.write.broker import MSG_ID, Publisher, connect
from audit.write.drain import CRASH_ENV, Drain
from audit.write.prepared import prepare
from audit.write.store import Unavailable
from audit.write.writer import AuditWriter
from gateway.config import load_config
from policies.yamlio import YamlModelError
from tests.audit_db import make_record, postgres_url
from tests.gateway_harness import free_port, running_gateway, write_config
from tests.nats_server import nats_server, stream_messages
from tests.upstream import SimulatorHandle

__all__ = ["postgres_url"]

AUDIT_KEY = "broker-test-audit-key"
KEY = ChainKey.from_key(AUDIT_KEY.encode())


@pytest.fixture
def nats_url(tmp_path: Path) -> Iterator[str]:
    with nats_server(tmp_path / "jetstream") as url:
        yield url


@pytest.fixture
def engine(postgres_url: str) -> Iterator[Engine]:
    upgrade(postgres_url)
    engine = make_engine(postgres_url)
    yield engine
    engine.dispose()


def settings(url: str, **kw: float) -> BrokerSettings:
    return BrokerSettings(url=url, **kw)  # type: ignore[arg-type]


def publish(url: str, n: int, first: int = 0) -> list[str]:
    """Publish ``n`` records as a gateway does; their request ids."""
    records = [make_record(first + i, steps=6) for i in range(n)]
    publisher = Publisher(settings(url))
    try:
        for i in range(0, n, 200):
            publisher.send([prepare(r) for r in records[i : i + 200]])
    finally:
        publisher.close()
    return [r.request_id for r in records]


def stored(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        row = conn.execute(text("SELECT count(*), count(DISTINCT request_id) FROM audit_requests")).one()
    return int(row[0]), int(row[1])


def writer_cmd(url: str, db: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "gateway.cli", "audit", "writer", "--from-nats", url, "--database", db, *extra]


def writer_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "WARDEN_AUDIT_KEY": AUDIT_KEY, **extra}


def run_writer(url: str, db: str, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        writer_cmd(url, db, *extra), capture_output=True, text=True, env=env or writer_env(), timeout=120, check=False
    )


def start_writer(url: str, db: str, *extra: str) -> subprocess.Popen[str]:
    """A writer process, once it has said it is draining (SIGTERM then stops it cleanly)."""
    proc = subprocess.Popen(
        writer_cmd(url, db, *extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=writer_env()
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert "draining" in first, first + (proc.stderr.read() if proc.stderr else "")
    return proc


def stats_of(out: str) -> dict[str, int]:
    line = [x for x in out.splitlines() if x.startswith("{")][-1]
    return json.loads(line)  # type: ignore[no-any-return]


def wait_until(what: str, done: object, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_gateway_writer_publishes_and_a_writer_process_drains_exactly_once(
    nats_url: str, postgres_url: str, engine: Engine, tmp_path: Path
) -> None:
    writer = AuditWriter(postgres_url, spool_dir=tmp_path / "spool", key=KEY, sink=Publisher(settings(nats_url)))
    writer.start()
    records = [make_record(i, steps=6) for i in range(300)]
    for r in records:
        writer.submit(r)
    assert writer.flush(30)
    writer.close()
    assert writer.stats.committed == 300 and writer.stats.spooled == 0
    assert stored(engine) == (0, 0)  # nothing is committed by the gateway itself
    assert stream_messages(settings(nats_url)) == 300

    done = run_writer(nats_url, postgres_url, "--until-idle")
    assert done.returncode == 0, done.stderr
    assert stats_of(done.stdout)["committed"] == 300
    assert stored(engine) == (300, 300)
    assert stream_messages(settings(nats_url)) == 0
    result = verify(engine, key=KEY)
    assert (result.ok, result.records_checked) == (True, 300), result.problems


def test_a_record_published_twice_is_stored_once(nats_url: str, engine: Engine, tmp_path: Path) -> None:
    ids = publish(nats_url, 50)
    publish_again = [prepare(make_record(i, steps=6, request_id=ids[i])) for i in range(10)]
    Publisher(settings(nats_url)).send(publish_again)  # same ids within the window: the broker drops them
    assert stream_messages(settings(nats_url)) == 50

    async def behind_the_window() -> None:
        nc, js = await connect(settings(nats_url))
        for item in publish_again[:5]:  # as if published after the duplicate window: new message ids
            await js.publish("warden.audit.records", item.spool_line(), headers={MSG_ID: f"late-{item.id}"})
        await nc.close()

    asyncio.run(behind_the_window())
    drain = Drain(engine, settings(nats_url), dead_letter_dir=tmp_path, key=KEY, batch_size=20)
    stats = asyncio.run(drain.run(asyncio.Event(), until_idle=True))
    assert (stats.committed, stats.duplicates, stats.rejected) == (50, 5, 0)
    assert stored(engine) == (50, 50)
    assert verify(engine, key=KEY).ok


def test_a_writer_killed_between_commit_and_ack_leaves_no_duplicate_and_no_gap(
    nats_url: str, postgres_url: str, engine: Engine
) -> None:
    publish(nats_url, 600)
    crashed = run_writer(
        nats_url, postgres_url, "--batch-size", "100", "--ack-wait-s", "1", env=writer_env(**{CRASH_ENV: "2"})
    )
    assert crashed.returncode == 9, crashed.stderr
    committed_before = stored(engine)[0]
    acked = 600 - stream_messages(settings(nats_url))
    assert 0 < acked < committed_before  # the second batch was committed, not acknowledged

    # a new process takes over; the unacknowledged batches come again after ack_wait
    proc = start_writer(nats_url, postgres_url, "--batch-size", "100", "--ack-wait-s", "1")
    try:
        wait_until("the stream to empty", lambda: stream_messages(settings(nats_url)) == 0)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert stats_of(out)["duplicates"] == committed_before - acked
    assert stored(engine) == (600, 600)
    result = verify(engine, key=KEY)
    assert (result.ok, result.records_checked, result.chains_checked) == (True, 600, 2), result.problems


def test_several_writers_one_killed_mid_load_lose_and_double_nothing(
    nats_url: str, postgres_url: str, engine: Engine
) -> None:
    publish(nats_url, 2000)
    args = ("--batch-size", "50", "--ack-wait-s", "2")
    procs = [start_writer(nats_url, postgres_url, *args) for _ in range(2)]
    try:
        wait_until("the first records", lambda: stored(engine)[0] > 0)
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait(10)
        procs.append(start_writer(nats_url, postgres_url, *args))
        wait_until("the stream to empty", lambda: stream_messages(settings(nats_url)) == 0)
    finally:
        outs = []
        for p in procs[1:]:
            p.send_signal(signal.SIGTERM)
            outs.append(p.communicate(timeout=30))
    assert [p.returncode for p in procs[1:]] == [0, 0], outs
    assert stored(engine) == (2000, 2000)
    result = verify(engine, key=KEY)
    assert (result.ok, result.records_checked) == (True, 2000), result.problems


def test_while_the_broker_is_down_the_gateway_spools_then_publishes(
    postgres_url: str, engine: Engine, tmp_path: Path
) -> None:
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    writer = AuditWriter(
        postgres_url,
        spool_dir=tmp_path / "spool",
        key=KEY,
        sink=Publisher(settings(url, connect_timeout_s=0.5, publish_timeout_s=1)),
        retry_initial_s=0.2,
        retry_max_s=0.5,
    )
    writer.start()
    try:
        for i in range(40):
            writer.submit(make_record(i, steps=6))
        assert writer.flush(30)
        assert writer.stats.spooled == 40 and not writer.stats.db_available
        with nats_server(tmp_path / "jetstream", port):
            assert writer.flush(60, include_spool=True)
            wait_until("the spool to be published", lambda: writer.stats.committed == 40)
            drain = Drain(engine, settings(url), dead_letter_dir=tmp_path, key=KEY)
            assert asyncio.run(drain.run(asyncio.Event(), until_idle=True)).committed == 40
            writer.close()
    finally:
        writer.close()
    assert stored(engine) == (40, 40)
    assert verify(engine, key=KEY).ok


def test_publisher_raises_unavailable_when_nothing_listens() -> None:
    publisher = Publisher(settings(f"nats://127.0.0.1:{free_port()}", connect_timeout_s=0.5))
    try:
        with pytest.raises(Unavailable, match="audit broker"):
            publisher.send([prepare(make_record(1, steps=2))])
    finally:
        publisher.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "no broker: give --from-nats"),
        (("--from-nats", "http://127.0.0.1:4222"), "must be a nats:// or tls:// URL"),
    ],
)
def test_writer_cli_refuses_bad_input(postgres_url: str, args: tuple[str, ...], message: str) -> None:
    env = {k: v for k, v in writer_env().items() if k != "WARDEN_CONFIG"}
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "audit", "writer", "--database", postgres_url, *args],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert message in done.stderr


def test_writer_cli_names_an_unreachable_broker(postgres_url: str) -> None:
    upgrade(postgres_url)
    done = run_writer(f"nats://127.0.0.1:{free_port()}", postgres_url, "--until-idle")
    assert done.returncode == 2
    assert "unreachable" in done.stderr


def test_writer_cli_refuses_a_database_behind_the_migrations(nats_url: str, postgres_url: str) -> None:
    done = run_writer(nats_url, postgres_url, "--until-idle")
    assert done.returncode == 2
    assert "warden db upgrade" in done.stderr


def test_benchmark_prints_writer_processes_side_by_side(postgres_url: str) -> None:
    """``benchmarks/audit_writer.py --only-nats``: its own nats-server, 1 and 2 writer processes."""
    from tests.audit_db import PG_URL

    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.audit_writer", "--only-nats", "--records", "300", "--repeat", "1",
         "--nats-writers", "1,2", "--pg", PG_URL],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines() if line[:1] in ("1", "2")]
    assert [r[0] for r in rows] == ["1", "2"], done.stdout
    assert all(float(r[1].replace(",", "")) > 0 for r in rows)


def test_a_gateway_configured_with_a_broker_publishes_its_requests(
    simulator: SimulatorHandle, nats_url: str, postgres_url: str, engine: Engine, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path, simulator.base_url, database_url=postgres_url, extra=f"audit: {{broker: {{url: '{nats_url}'}}}}\n"
    )
    with running_gateway(config) as gw:
        client = gw.client()
        for i in range(5):
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"hello {i}"}])
        gw.flush_audit()
        assert stream_messages(settings(nats_url)) == 5
        assert stored(engine) == (0, 0)
    drain = Drain(engine, settings(nats_url), dead_letter_dir=tmp_path, key=KEY)
    assert asyncio.run(drain.run(asyncio.Event(), until_idle=True)).committed == 5
    with engine.connect() as conn:
        tenants = conn.execute(text("SELECT DISTINCT tenant FROM audit_requests")).scalars().all()
    assert tenants == ["acme"]
    assert verify(engine, key=KEY).ok


def test_a_broker_url_that_is_not_nats_is_a_config_error(tmp_path: Path) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9", extra="audit: {broker: {url: 'http://nats:4222'}}\n")
    with pytest.raises(YamlModelError, match=r"audit.broker.url.*nats://"):
        load_config(config)
