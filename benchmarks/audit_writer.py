"""How many 20-step audit records per second the writer sustains, into SQLite and PostgreSQL.

Question: can one gateway process's audit writer keep up with its traffic? Targets on the
2-core reference machine: 5,000 records/s into SQLite, 10,000 into PostgreSQL.

Each run writes into a fresh database (a temporary SQLite file; a temporary schema on the
PostgreSQL at ``--pg``), submits every record as fast as it can (the producer is never the
bottleneck: the records are built beforehand, and frozen out of the garbage collector's
passes, since a real gateway's queue is near empty), and times until ``flush`` says all are
committed. Also printed: the writer process's CPU time per record during that run (all its
threads; the PostgreSQL server's own work is not in it), and, measured apart on one thread,
the CPU time per record of the writer's two stages: preparing (normalize, canonical JSON,
table rows: the prepare thread) and committing (hash-chain linking, idempotence check,
inserts: the commit thread). Under load from other processes the wall-clock rate drops
first; the CPU figures say whether the writer itself got slower.

    python -m benchmarks.audit_writer [--records 20000] [--pg URL] [--no-pg] [--repeat 3] [--pg-writers 2]

PostgreSQL is also measured with ``--pg-writers`` writer processes at once (as several
gateway processes write, each in its own chain), each submitting ``--records``: their
combined rate. One writer's records pass through one interpreter lock, so a process can use
about one core; the PostgreSQL server itself needs little.

The machine is shared: the load average at the start is printed beside the figures.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from audit.bulk import prepare_rows
from audit.chain import Chain, ChainKey
from audit.db import make_engine, upgrade
from audit.models import ChainKind
from audit.prepared import prepare
from audit.record import AuditRecord
from audit.store import commit_batch
from audit.writer import AuditWriter
from gateway.pipeline.session import new_request_id
from tests.audit_db import make_record

TARGETS = {"sqlite": 5_000, "postgresql": 10_000}
KEY = ChainKey.from_key(b"benchmark-key")


def make_records(n: int) -> list[AuditRecord]:
    """``n`` 20-step records with request ids as the gateway makes them: time-ordered, so new
    rows land at the end of the id indexes (random ids would cost PostgreSQL about a third more)."""
    return [make_record(i, request_id=new_request_id()) for i in range(n)]


@dataclass(frozen=True)
class Run:
    backend: str
    records: int
    seconds: float
    #: the writer process's CPU seconds (all threads) during the timed run
    cpu_s: float
    prepare_s: float
    commit_s: float
    #: the 1-minute load average before each timed run
    loads: tuple[float, ...] = ()
    #: writer processes at once (records is their total)
    writers: int = 1

    @property
    def rate(self) -> float:
        return self.records / self.seconds


@contextmanager
def sqlite_url() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as d:
        yield f"sqlite:///{d}/bench.db"


@contextmanager
def pg_url(base: str) -> Iterator[str]:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    conninfo = make_url(base).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield (
            make_url(base)
            .update_query_dict({"options": f"-csearch_path={schema}"})
            .render_as_string(hide_password=False)
        )
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def through_writer(url: str, n: int) -> tuple[float, float]:
    """Wall time for ``n`` records through a running AuditWriter, submit to committed, and the
    process CPU time meanwhile."""
    upgrade(url)
    records = make_records(n)
    gc.freeze()  # the pre-built records are a benchmark artefact: keep them out of GC passes
    with tempfile.TemporaryDirectory() as spool:
        writer = AuditWriter(url, spool_dir=Path(spool), key=KEY, queue_size=n + 1)
        writer.start()
        start, cpu = time.perf_counter(), time.process_time()
        for r in records:
            writer.submit(r)
        if not writer.flush(600):
            raise RuntimeError("writer did not finish")
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        stats = writer.stats
        writer.close()
    gc.unfreeze()
    if stats.committed != n or stats.spooled:
        raise RuntimeError(f"unexpected writer stats {stats}")
    return elapsed, cpu


def _writer_process(url: str, n: int, start: object, out: object) -> None:
    """One of several writer processes: submit ``n`` records once all are ready; report times."""
    records = make_records(n)
    gc.freeze()
    with tempfile.TemporaryDirectory() as spool:
        writer = AuditWriter(url, spool_dir=Path(spool), key=KEY, queue_size=n + 1)
        writer.start()
        start.wait()  # type: ignore[attr-defined]
        began = time.monotonic()  # one clock for all processes
        for r in records:
            writer.submit(r)
        done = writer.flush(600)
        ended = time.monotonic()
        committed = writer.stats.committed
        writer.close()
    out.put((began, ended, committed if done else -1))  # type: ignore[attr-defined]


def through_writers(url: str, n: int, writers: int) -> float:
    """Wall time for ``writers`` processes to commit ``n`` records each, first start to last end."""
    upgrade(url)
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Barrier(writers), ctx.Queue()
    procs = [ctx.Process(target=_writer_process, args=(url, n, start, out)) for _ in range(writers)]
    for p in procs:
        p.start()
    results = [out.get(timeout=900) for _ in procs]
    for p in procs:
        p.join()
    if any(committed != n for _, _, committed in results):
        raise RuntimeError(f"a writer process did not commit all its records: {results}")
    return max(end for _, end, _ in results) - min(began for began, _, _ in results)


def measure_writers(make: object, n: int, repeat: int, writers: int) -> Run:
    walls, loads = [], []
    for _ in range(repeat):
        with make() as url:  # type: ignore[operator]
            loads.append(os.getloadavg()[0])
            walls.append(through_writers(url, n, writers))
    rates = ", ".join(f"{n * writers / w:,.0f}" for w in walls)
    print(f"postgresql, {writers} writer processes: {rates} records/s")
    return Run("postgresql", n * writers, statistics.median(walls), 0.0, 0.0, 0.0, tuple(loads), writers)


def split(url: str, n: int) -> tuple[float, float]:
    """Thread CPU seconds for the writer's two stages on ``n`` records, run one after the other
    on this thread: what each of the writer's threads does, without the other competing."""
    upgrade(url)
    engine = make_engine(url)
    records = make_records(n)
    gc.freeze()
    requests, reviews = Chain.new(ChainKind.requests, KEY), Chain.new(ChainKind.reviews, KEY)
    dialect = engine.dialect.name
    t0 = time.thread_time()
    items = []
    for r in records:  # one by one, as the writer's prepare thread does
        item = prepare(r)
        prepare_rows((item,), dialect)
        items.append(item)
    t1 = time.thread_time()
    for i in range(0, n, 500):
        commit_batch(engine, requests, reviews, items[i : i + 500], dedupe=False)
    t2 = time.thread_time()
    gc.unfreeze()
    engine.dispose()
    return t1 - t0, t2 - t1


def measure(backend: str, make: object, n: int, repeat: int) -> Run:
    walls, cpus, loads = [], [], []
    for _ in range(repeat):
        with make() as url:  # type: ignore[operator]
            loads.append(os.getloadavg()[0])
            wall, cpu = through_writer(url, n)
            walls.append(wall)
            cpus.append(cpu)
    with make() as url:  # type: ignore[operator]
        prep, commit = split(url, n)
    rates = ", ".join(f"{n / w:,.0f}" for w in walls)
    print(f"{backend}: {rates} records/s; load average before each run: {', '.join(f'{x:.2f}' for x in loads)}")
    return Run(backend, n, statistics.median(walls), statistics.median(cpus), prep, commit, tuple(loads))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--no-pg", action="store_true")
    parser.add_argument("--pg-writers", type=int, default=2, help="writer processes for the combined run (0: none)")
    args = parser.parse_args()
    load_at_start = os.getloadavg()[0]

    runs = [measure("sqlite", sqlite_url, args.records, args.repeat)]
    if not args.no_pg:
        runs.append(measure("postgresql", lambda: pg_url(args.pg), args.records, args.repeat))
        if args.pg_writers > 1:
            runs.append(measure_writers(lambda: pg_url(args.pg), args.records, args.repeat, args.pg_writers))

    load = os.getloadavg()[0]
    print(
        f"\naudit writer, {args.records} records of 20 steps each, median of {args.repeat} runs; "
        f"{os.cpu_count()} CPUs, load average {load_at_start:.2f} at start, {load:.2f} at end\n"
    )
    head = f"{'backend':<16} {'records/s':>10} {'target':>8} {'ratio':>6} {'steps/s':>12} "
    head += f"{'CPU µs/rec':>11} {'prepare µs/rec':>15} {'commit µs/rec':>14}"
    print(head)
    print("-" * len(head))
    for r in runs:
        target = TARGETS[r.backend]
        label = r.backend if r.writers == 1 else f"{r.backend} x{r.writers}"
        line = f"{label:<16} {r.rate:>10,.0f} {target:>8,} {r.rate / target:>6.2f} {r.rate * 20:>12,.0f} "
        if r.writers == 1:
            line += f"{r.cpu_s / r.records * 1e6:>11.1f} {r.prepare_s / r.records * 1e6:>15.1f} "
            line += f"{r.commit_s / r.records * 1e6:>14.1f}"
        else:
            line += f"{'-':>11} {'-':>15} {'-':>14}"
        print(line)
    print(f"\n{'postgresql x' + str(args.pg_writers):<16} = that many writer processes at once, one chain each")
    print("CPU = the writer process's CPU time during the timed runs (median), all threads")
    print("prepare = normalize + canonical JSON + table rows; commit = link (HMAC) + inserts + commit")
    print("(both on one thread, apart; the database server's own CPU is in neither; wall time is in records/s)")


if __name__ == "__main__":
    main()
