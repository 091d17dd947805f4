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
        [--nats-writers 1,2,4] [--only-nats]

PostgreSQL is also measured with ``--pg-writers`` writer processes at once (as several
gateway processes write, each in its own chain), each submitting ``--records``: their
combined rate. One writer's records pass through one interpreter lock, so a process can use
about one core; the PostgreSQL server itself needs little.

With a broker (``--nats-writers 1,2,4``, the default; ``--nats-writers ''`` for none) the
question is the fleet's: how fast do 1, 2 and 4 ``warden audit writer`` processes drain a NATS
JetStream stream into PostgreSQL (``audit.write.drain``)? The benchmark starts its own ``nats-server
-js`` on a free loopback port, publishes ``--records`` records into a fresh stream (not timed),
then starts that many writer processes at once into a fresh schema and times first start to
last commit, side by side in one run.

The machine is shared: the load average at the start is printed beside the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from audit.chain import Chain, ChainKey
from audit.db import make_engine, upgrade
from audit.record import AuditRecord, ChainKind
from audit.settings import BrokerSettings
from audit.write.broker import Publisher
from audit.write.bulk import prepare_rows
from audit.write.drain import Drain
from audit.write.prepared import prepare
from audit.write.store import commit_batch
from audit.write.writer import AuditWriter
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


@contextmanager
def nats_url() -> Iterator[str]:
    """A ``nats-server -js`` of the benchmark's own, on a free loopback port."""
    exe = shutil.which("nats-server") or "/usr/sbin/nats-server"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as store:
        proc = subprocess.Popen(
            [exe, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", store],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(300):
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        break
                time.sleep(0.05)
            yield f"nats://127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(10)


def _publish(settings: BrokerSettings, n: int) -> None:
    records = make_records(n)
    publisher = Publisher(settings)
    try:
        for i in range(0, n, 500):
            publisher.send([prepare(r) for r in records[i : i + 500]])
    finally:
        publisher.close()


def _drain_process(url: str, settings: BrokerSettings, start: object, out: object) -> None:
    """One ``warden audit writer`` process's work: drain until the stream is empty."""
    engine = make_engine(url)
    with tempfile.TemporaryDirectory() as folder:
        drain = Drain(engine, settings, dead_letter_dir=Path(folder), key=KEY, batch_size=500)
        start.wait()  # type: ignore[attr-defined]
        began, cpu = time.monotonic(), time.process_time()  # monotonic: one clock for all processes
        stats = asyncio.run(drain.run(asyncio.Event(), until_idle=True, fetch_timeout_s=0.5))
        cpu = time.process_time() - cpu
    engine.dispose()
    out.put((began, stats.last_commit, stats.committed, stats.duplicates, cpu))  # type: ignore[attr-defined]


def through_drains(url: str, nats: str, n: int, writers: int) -> tuple[float, float]:
    """Wall time for ``writers`` drain processes to commit ``n`` published records in all, and
    their CPU time together."""
    upgrade(url)
    tag = uuid.uuid4().hex[:8]
    settings = BrokerSettings(url=nats, stream=f"BENCH_{tag}", subject=f"bench.{tag}", durable=f"bench-{tag}")
    _publish(settings, n)
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Barrier(writers), ctx.Queue()
    procs = [ctx.Process(target=_drain_process, args=(url, settings, start, out)) for _ in range(writers)]
    for p in procs:
        p.start()
    results = [out.get(timeout=900) for _ in procs]
    for p in procs:
        p.join()
    if sum(r[2] for r in results) != n or any(r[3] for r in results):
        raise RuntimeError(f"the writers did not commit each record once: {results}")
    return max(r[1] for r in results) - min(r[0] for r in results), sum(r[4] for r in results)


def measure_drains(pg: str, n: int, repeat: int, counts: list[int]) -> list[Run]:
    """1, 2, 4 ... writer processes, side by side: each count once per round, ``repeat`` rounds."""
    walls: dict[int, list[float]] = {k: [] for k in counts}
    cpus: dict[int, list[float]] = {k: [] for k in counts}
    loads: dict[int, list[float]] = {k: [] for k in counts}
    with nats_url() as nats:
        for _ in range(repeat):
            for k in counts:
                with pg_url(pg) as url:
                    loads[k].append(os.getloadavg()[0])
                    wall, cpu = through_drains(url, nats, n, k)
                    walls[k].append(wall)
                    cpus[k].append(cpu)
    runs = []
    for k in counts:
        print(f"broker -> postgresql, {k} writer processes: {', '.join(f'{n / w:,.0f}' for w in walls[k])} records/s")
        cpu = statistics.median(cpus[k])
        runs.append(Run("broker", n, statistics.median(walls[k]), cpu, 0.0, 0.0, tuple(loads[k]), k))
    return runs


def print_drains(runs: list[Run], n: int, repeat: int) -> None:
    print(f"\nbroker (NATS JetStream) -> PostgreSQL: {n} records of 20 steps, median of {repeat} rounds")
    head = f"{'writer processes':<18} {'records/s':>10} {'vs one':>7} {'steps/s':>12} {'CPU µs/rec':>11} "
    head += f"{'load before':>12}"
    print(head)
    print("-" * len(head))
    one = runs[0].rate
    for r in runs:
        line = f"{r.writers:<18} {r.rate:>10,.0f} {r.rate / one:>6.2f}x {r.rate * 20:>12,.0f} "
        line += f"{r.cpu_s / r.records * 1e6:>11.1f} "
        print(line + f"{statistics.median(r.loads):>12.2f}")
    print("(first process started to last commit; publishing is not timed; each process its own chain;")
    print(" CPU = all writer processes' CPU time together, per record; the database server's is not in it)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--no-pg", action="store_true")
    parser.add_argument("--pg-writers", type=int, default=2, help="writer processes for the combined run (0: none)")
    parser.add_argument("--nats-writers", default="1,2,4", help="writer process counts draining a broker ('': none)")
    parser.add_argument("--only-nats", action="store_true", help="only the broker's writer processes")
    args = parser.parse_args()
    load_at_start = os.getloadavg()[0]
    counts = [int(k) for k in args.nats_writers.split(",") if k.strip()]
    if args.only_nats:
        print_drains(measure_drains(args.pg, args.records, args.repeat, counts), args.records, args.repeat)
        return

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
    if counts and not args.no_pg:
        print_drains(measure_drains(args.pg, args.records, args.repeat, counts), args.records, args.repeat)


if __name__ == "__main__":
    main()
