"""Soak: three Warden replicas under steady load for minutes, on PostgreSQL and Redis.

Starts the built-in upstream simulator and three ``warden serve`` processes (default policy,
audit on, one PostgreSQL schema, Redis for rate limits), then runs ``--clients`` concurrent
clients (half streamed, half not, spread over the replicas round-robin) for ``--seconds``.
Reports errors, p50/p99 latency per minute and overall, each replica's RSS over time (and
its growth after the warm-up), and audit lag: the time from a client's answer to its record
being committed (sampled requests, looked up by id).

    python -m benchmarks.soak [--seconds 240] [--clients 64] [--warmup 30]
        [--database postgresql+psycopg://postgres@127.0.0.1:5432/test] [--redis redis://127.0.0.1:6379/14]

Goals (issue #14): zero errors, RSS growth under 10 % after warm-up, audit lag under 1 s.
Figures go to stdout and ``benchmarks/results/soak.json``. On a shared 2-core machine the
load generator, the simulator, three gateways, PostgreSQL and Redis all compete for the same
cores: latency figures say more about that than about Warden.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
from sqlalchemy.engine import make_url

from benchmarks._loadgen import check_reply, percentile
from benchmarks._procs import Server, memory_mib, start_http_server, start_simulator, stop
from benchmarks._variants import DEFAULT_POLICY, MODEL, REPO

RESULTS = REPO / "benchmarks" / "results" / "soak.json"
REPLICAS = 3
SAMPLE_EVERY = 10  # one request in ten is followed into the database for the audit lag
PROMPT = (
    "I am planning a small vegetable garden this spring. The plot gets six hours of sun, the soil "
    "is heavy clay and July is dry. Which vegetables forgive a first season, and how should I "
    "prepare the soil? (Question {n} of the soak.)"
)


@dataclass
class Totals:
    done: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    #: (seconds since start, latency ms, streamed)
    latencies: list[tuple[float, float, bool]] = field(default_factory=list)
    #: request id -> monotonic time the client had its whole answer
    sampled: dict[str, float] = field(default_factory=dict)
    lags_ms: list[float] = field(default_factory=list)

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


def _config(folder: Path, name: str, upstream: str, key: str, redis_url: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(
        f"model_list:\n"
        f"  - model_name: {MODEL}\n"
        f'    litellm_params: {{model: openai/{MODEL}, api_base: "{upstream}/v1", api_key: sk-sim}}\n'
        f"policy: {DEFAULT_POLICY}\n"
        f"redis_url: {redis_url}\n"
        f"audit: {{spool_dir: {folder / name / 'spool'}}}\n"
        f"keys:\n  - {{key: {key}, tenant: soak, id: soak, rpm: 100000000}}\n",
        encoding="utf-8",
    )
    return path


async def _client(
    n0: int, urls: list[str], key: str, totals: Totals, started: float, until: float, warmup_until: float
) -> None:
    headers = {"authorization": f"Bearer {key}"}
    stream = n0 % 2 == 0
    async with httpx.AsyncClient(timeout=60, trust_env=False) as client:
        n = n0
        while time.monotonic() < until:
            url = urls[n % len(urls)]
            body: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": PROMPT.format(n=n)}]}
            if stream:
                body["stream"] = True
            t0 = time.monotonic()
            try:
                async with client.stream("POST", f"{url}/v1/chat/completions", headers=headers, json=body) as r:
                    raw = await r.aread()
                    if r.status_code != 200:
                        totals.error(f"http {r.status_code}")
                        continue
                    check_reply(raw[-4096:], stream)
                    request_id = r.headers["x-warden-request-id"]
            except Exception as exc:  # any failure is an error of the soak, counted by kind
                totals.error(type(exc).__name__)
                continue
            finally:
                n += 64
            done = time.monotonic()
            totals.done += 1
            if done >= warmup_until:
                totals.latencies.append((done - started, (done - t0) * 1000, stream))
                if totals.done % SAMPLE_EVERY == 0:
                    totals.sampled[request_id] = done


async def _lag_poller(conninfo: str, totals: Totals, clients_done: asyncio.Event) -> None:
    """Look the sampled ids up every 50 ms; lag = first seen committed - answered. Runs until
    the clients are done and every sampled record was seen (or 30 s more have passed)."""
    give_up: float | None = None
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        while not clients_done.is_set() or totals.sampled:
            if totals.sampled:
                ids = list(totals.sampled)
                cur = await conn.execute("SELECT request_id FROM audit_requests WHERE request_id = ANY(%s)", (ids,))
                seen_at = time.monotonic()
                for (rid,) in await cur.fetchall():
                    totals.lags_ms.append((seen_at - totals.sampled.pop(rid)) * 1000)
            if clients_done.is_set():
                give_up = give_up or time.monotonic() + 30
                if time.monotonic() > give_up:
                    break  # records never seen: reported as lost
            await asyncio.sleep(0.05)


async def _rss_sampler(
    servers: list[Server], series: dict[str, list[tuple[float, float]]], started: float, stop_at: float
) -> None:
    while time.monotonic() < stop_at:
        for s in servers:
            pid = s.process.pid
            series[s.name].append((round(time.monotonic() - started, 1), round(memory_mib(pid)[0], 1)))
        await asyncio.sleep(5)


def _schema_url(base: str) -> tuple[str, str, str]:
    """A fresh schema on ``base``: (URL for the gateways, libpq conninfo, schema name)."""
    schema = f"warden_soak_{uuid.uuid4().hex[:10]}"
    url = make_url(base)
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    scoped = url.update_query_dict({"options": f"-csearch_path={schema}"})
    scoped_conninfo = scoped.set(drivername="postgresql").render_as_string(hide_password=False)
    return scoped.render_as_string(hide_password=False), scoped_conninfo, schema


def _drop_schema(base: str, schema: str) -> None:
    conninfo = make_url(base).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _growth(points: list[tuple[float, float]], after_s: float) -> float | None:
    steady = [mib for t, mib in points if t >= after_s]
    if len(steady) < 2 or steady[0] <= 0:
        return None
    return (steady[-1] - steady[0]) / steady[0] * 100


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    from audit.db import upgrade

    url, conninfo, schema = _schema_url(args.database)
    upgrade(url)
    key = f"sk-soak-{secrets.token_hex(12)}"
    env = {
        "WARDEN_DATABASE_URL": url,
        "WARDEN_AUDIT_KEY": secrets.token_hex(32),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    }
    with tempfile.TemporaryDirectory(prefix="warden-soak-") as tmp:
        folder = Path(tmp)
        sim = await start_simulator(
            [sys.executable, "-m", "gateway.simulator", "--host", "127.0.0.1", "--port", "0"], folder / "sim.log"
        )
        servers: list[Server] = []
        try:
            from benchmarks._procs import free_port

            for i in range(REPLICAS):
                name = f"replica-{i}"
                config = _config(folder, name, sim.url, key, args.redis)
                port = free_port()
                argv = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config), "--port", str(port),
                        "--log-level", "warning"]  # fmt: skip
                server, _ = await start_http_server(
                    name, argv, port=port, log=folder / f"{name}.log", env=env, ready_path="/health", timeout_s=120
                )
                servers.append(server)
            print(f"soak: {REPLICAS} replicas up, {args.clients} clients for {args.seconds} s", file=sys.stderr)
            totals = Totals()
            started = time.monotonic()
            until = started + args.seconds
            rss: dict[str, list[tuple[float, float]]] = {s.name: [] for s in servers}
            urls = [s.url for s in servers]
            clients_done = asyncio.Event()

            async def clients() -> None:
                await asyncio.gather(
                    *(_client(i, urls, key, totals, started, until, started + args.warmup) for i in range(args.clients))
                )
                clients_done.set()

            await asyncio.gather(
                _rss_sampler(servers, rss, started, until), _lag_poller(conninfo, totals, clients_done), clients()
            )
            lost = len(totals.sampled)
        finally:
            for s in servers:
                await stop(s.process)
            await stop(sim.process)
            _drop_schema(args.database, schema)
    return _summary(args, totals, rss, lost)


def _summary(
    args: argparse.Namespace, t: Totals, rss: dict[str, list[tuple[float, float]]], lost: int
) -> dict[str, Any]:
    lat = [ms for _, ms, _ in t.latencies]
    per_minute = []
    for minute in range(int(args.seconds // 60) + 1):
        window = [ms for at, ms, _ in t.latencies if minute * 60 <= at < (minute + 1) * 60]
        if window:
            per_minute.append({"minute": minute + 1, "requests": len(window), "p50_ms": percentile(window, 50),
                               "p99_ms": percentile(window, 99)})  # fmt: skip
    return {
        "settings": {"seconds": args.seconds, "clients": args.clients, "warmup_s": args.warmup, "replicas": REPLICAS},
        "requests": t.done,
        "errors": t.errors,
        "p50_ms": percentile(lat, 50),
        "p99_ms": percentile(lat, 99),
        "p99_streamed_ms": percentile([ms for _, ms, s in t.latencies if s], 99),
        "p99_plain_ms": percentile([ms for _, ms, s in t.latencies if not s], 99),
        "per_minute": per_minute,
        "rss_mib": rss,
        "rss_growth_after_warmup_pct": {name: _growth(points, args.warmup) for name, points in rss.items()},
        "audit_lag_ms": {
            "samples": len(t.lags_ms),
            "p50": percentile(t.lags_ms, 50),
            "p99": percentile(t.lags_ms, 99),
            "max": max(t.lags_ms) if t.lags_ms else None,
            "never_seen": lost,
        },
    }


def _fmt(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:,.1f}{unit}"


def print_report(s: dict[str, Any]) -> None:
    errors = sum(s["errors"].values())
    print(f"== soak: {s['settings']['replicas']} replicas, {s['settings']['clients']} clients, "
          f"{s['settings']['seconds']} s (first {s['settings']['warmup_s']} s warm-up)")  # fmt: skip
    print(f"requests {s['requests']:,}   errors {errors} {s['errors'] or ''}")
    streamed, plain = _fmt(s["p99_streamed_ms"], " ms"), _fmt(s["p99_plain_ms"], " ms")
    print(f"latency p50 {_fmt(s['p50_ms'], ' ms')}   p99 {_fmt(s['p99_ms'], ' ms')}   "
          f"(streamed p99 {streamed}, not streamed p99 {plain})")  # fmt: skip
    print("| minute | requests | p50 ms | p99 ms |\n| --- | --- | --- | --- |")
    for m in s["per_minute"]:
        print(f"| {m['minute']} | {m['requests']:,} | {_fmt(m['p50_ms'])} | {_fmt(m['p99_ms'])} |")
    print("| replica | RSS MiB over time (every 5 s) | growth after warm-up |\n| --- | --- | --- |")
    for name, points in s["rss_mib"].items():
        shown = " ".join(f"{mib:.0f}" for _, mib in points[:: max(1, len(points) // 12)])
        print(f"| {name} | {shown} | {_fmt(s['rss_growth_after_warmup_pct'][name], ' %')} |")
    lag = s["audit_lag_ms"]
    print(f"audit lag (answer -> committed, {lag['samples']} samples): p50 {_fmt(lag['p50'], ' ms')}, "
          f"p99 {_fmt(lag['p99'], ' ms')}, max {_fmt(lag['max'], ' ms')}, never seen {lag['never_seen']}")  # fmt: skip
    growth = [g for g in s["rss_growth_after_warmup_pct"].values() if g is not None]
    print("== goals: zero errors {}, RSS growth < 10 % {}, audit lag < 1 s {}".format(
        "met" if errors == 0 else "MISSED",
        "met" if growth and max(growth) < 10 else "MISSED",
        "met" if lag["max"] is not None and lag["max"] < 1000 and lag["never_seen"] == 0 else "MISSED",
    ))  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=240.0)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--warmup", type=float, default=30.0)
    parser.add_argument(
        "--database", default=os.environ.get("WARDEN_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    )
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    summary = asyncio.run(soak(args))
    print_report(summary)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return 0 if not summary["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
