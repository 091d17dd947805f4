"""PostgreSQL goes away in the middle of a load and comes back: every record lands exactly once.

The test runs its own PostgreSQL (``initdb`` / ``pg_ctl`` in a temporary folder, on a free
port), so stopping it never disturbs the machine's shared server. PostgreSQL refuses to run
as root, so as root the server runs as the ``postgres`` user through ``runuser``.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text

from audit.chain import ChainKey
from audit.db import make_engine, upgrade
from audit.read.verify import verify
from audit.write.writer import AuditWriter
from tests.audit_db import make_record

pytestmark = pytest.mark.postgres

KEY = ChainKey.from_key(b"outage-test-key")


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class PrivatePostgres:
    bin_dir: Path
    root: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        self._run(str(self.bin_dir / "initdb"), "-D", str(self.root / "data"), "-A", "trust", "-U", "postgres",
                  "-E", "UTF8", "--no-sync")  # fmt: skip

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.root / "data"), "-o", options,
                  "-l", str(self.root / "log"), "-w", "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.root / "data"), "-m", mode, "-w", "stop")


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    bin_dir = _bin_dir()
    if bin_dir is None:
        message = "no initdb/pg_ctl under /usr/lib/postgresql/*/bin"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    root = Path(tempfile.mkdtemp(prefix="warden-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    pg = PrivatePostgres(bin_dir, root, _free_port())
    pg.init()
    pg.start()
    try:
        yield pg
    finally:
        try:
            pg.stop("immediate")
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(root, ignore_errors=True)


def test_postgres_stopped_mid_load_loses_and_duplicates_nothing(
    private_postgres: PrivatePostgres, tmp_path: Path
) -> None:
    upgrade(private_postgres.url)
    writer = AuditWriter(
        private_postgres.url, spool_dir=tmp_path, key=KEY, batch_size=20, retry_initial_s=0.1, retry_max_s=0.5
    )
    writer.start()
    records = [make_record(i) for i in range(300)]

    def load(part: list[int]) -> None:
        for i in part:
            writer.submit(records[i])
            if i % 10 == 0:
                time.sleep(0.005)  # a steady trickle, so the outage lands in mid-stream

    load(list(range(100)))
    private_postgres.stop("fast")
    load(list(range(100, 200)))
    assert writer.flush(60)  # durable while the server is down: in the spool
    assert writer.stats.spooled > 0
    private_postgres.start()
    load(list(range(200, 300)))
    assert writer.flush(120, include_spool=True)
    stats = writer.stats
    writer.close()

    assert stats.rejected == 0
    engine = make_engine(private_postgres.url)
    try:
        with engine.connect() as conn:
            ids = list(conn.execute(text("SELECT request_id FROM audit_requests")).scalars())
            seqs = list(conn.execute(text("SELECT seq FROM audit_requests ORDER BY seq")).scalars())
        assert sorted(ids) == sorted(r.request_id for r in records)
        assert seqs == list(range(1, 301))
        assert verify(engine, key=KEY).ok
    finally:
        engine.dispose()
