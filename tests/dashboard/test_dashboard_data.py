"""``dashboard.data`` queries, exports and spike detection on a database of real gateway requests."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from sqlalchemy import Engine, select

from audit.db import make_engine, upgrade
from audit.read.export import iter_audit_records
from audit.read.record_filter import NOT_CHECKS, RecordFilter
from audit.record import AuditRecord, Ruling
from audit.rows import ACTED, REQUESTS, load_page
from audit.write.writer import AuditWriter
from dashboard import data, export, spikes
from dashboard.data import traffic
from tests.audit_db import make_record, postgres_schema
from tests.dashboard_fixtures import Dash, dash, dashboard_seed

__all__ = ["dash", "dashboard_seed"]

ALL = RecordFilter()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, dash: Dash, tmp_path: Path) -> Iterator[str]:
    """The seeded database, or (postgres) the same records written into a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield dash.database_url
        return
    with postgres_schema() as url:
        upgrade(url)
        source = make_engine(dash.database_url)
        with source.connect() as conn:
            records = list(load_page(list(conn.execute(select(REQUESTS)).mappings())))
        source.dispose()
        writer = AuditWriter(url, spool_dir=tmp_path / "pg-spool")
        writer.start()
        for record in records:
            record.chain_id = record.seq = record.prev_hash = record.hash = None
            writer.submit(record)
        assert writer.flush(20)
        writer.close()
        yield url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


def total(dash: Dash) -> int:
    return sum(len(ids) for ids in dash.ids.values())


def rule(url: str, tmp_path: Path, rulings: dict[str, Ruling]) -> None:
    writer = AuditWriter(url, spool_dir=tmp_path / "spool")
    writer.start()
    for rid, ruling in rulings.items():
        writer.submit_review(rid, "rita", ruling, "note")
    assert writer.flush(10)
    writer.close()


def test_filters_narrow_in_the_database(dash: Dash, engine: Engine) -> None:
    assert data.count_requests(engine, ALL) == total(dash)
    assert data.count_requests(engine, RecordFilter(verdicts=("block",))) == 1
    assert data.count_requests(engine, RecordFilter(checks=("watch",))) == 2
    assert data.count_requests(engine, RecordFilter(text="MERGER")) == 2  # case-insensitive
    assert data.count_requests(engine, RecordFilter(text="100%_")) == 0  # LIKE wildcards are literal
    assert data.count_requests(engine, RecordFilter(tenants=("acme",), models=("sim-reasoner",))) == 1
    assert data.count_requests(engine, RecordFilter(tenants=("other",))) == 0
    future = datetime.now(UTC) + timedelta(hours=1)
    assert data.count_requests(engine, RecordFilter(start=future)) == 0
    assert data.count_requests(engine, RecordFilter(end=future)) == total(dash)
    monitor = data.request_page(engine, RecordFilter(checks=("ticket",)))
    assert [r.request_id for r in monitor] == dash.ids["monitor"]
    assert monitor[0].verdict == "pass"  # monitor mode changed nothing


def test_pages_are_newest_first_and_do_not_overlap(dash: Dash, engine: Engine) -> None:
    first = data.request_page(engine, ALL, limit=5, offset=0)
    second = data.request_page(engine, ALL, limit=5, offset=5)
    everything = data.request_page(engine, ALL, limit=100)
    assert [r.request_id for r in first + second] == [r.request_id for r in everything[:10]]
    assert [r.started_at for r in everything] == sorted((r.started_at for r in everything), reverse=True)
    flagged = next(r for r in everything if r.request_id == dash.ids["flag"][0])
    assert flagged.acted == ("watch",)


def test_overview_counts_rates_and_percentiles(dash: Dash, engine: Engine) -> None:
    ov = data.overview(engine, ALL, bucket_s=60)
    assert ov.total == total(dash)
    assert ov.by_verdict["block"] == 1
    assert ov.by_verdict["flag"] == len(dash.ids["flag"]) + len(dash.ids["output_flag"])
    assert ov.monitor_would == {"flag": 1}
    assert ov.latency.p50 is not None and ov.latency.p95 is not None and ov.latency.p99 is not None
    assert ov.latency.p50 <= ov.latency.p95 <= ov.latency.p99
    assert ov.ttft.p50 is not None
    trends = data.latency_trends(engine, ALL, bucket_s=60)
    assert trends.latency and all(p.p50 is not None for p in trends.latency)
    assert trends.ttft and all(p.p50 is not None for p in trends.ttft)
    assert sum(p.requests for p in ov.series) == ov.total
    assert ov.prompt_tokens > 0
    watch = [c for c in ov.top_checks if c.name == "watch"]
    assert [(c.stage, c.verdict, c.enforced, c.count) for c in watch] == [("input", "flag", True, 2)]
    assert all(c.name != "upstream" and not c.name.startswith("step ") for c in ov.top_checks)


def test_queue_rulings_and_check_quality(dash: Dash, db_url: str, engine: Engine, tmp_path: Path) -> None:
    waiting = data.queue_count(engine, ALL)
    assert waiting == len(dash.ids["block"]) + len(dash.ids["flag"]) + len(dash.ids["output_flag"])
    oldest = data.queue_page(engine, ALL, limit=waiting)
    assert [r.started_at for r in oldest] == sorted(r.started_at for r in oldest)
    rule(db_url, tmp_path, {
        dash.ids["flag"][0]: Ruling.false_positive,
        dash.ids["flag"][1]: Ruling.escalate,
        dash.ids["block"][0]: Ruling.confirm,
    })  # fmt: skip
    assert data.queue_count(engine, ALL) == waiting - 3
    assert [r.request_id for r in data.queue_page(engine, ALL, "escalated")] == [dash.ids["flag"][1]]
    ruled = data.queue_page(engine, ALL, "ruled")
    assert {r.request_id: r.ruling for r in ruled} == {
        dash.ids["flag"][0]: "false_positive",
        dash.ids["block"][0]: "confirm",
    }

    rule(db_url, tmp_path, {dash.ids["flag"][1]: Ruling.false_positive})  # the escalation is resolved
    assert data.queue_page(engine, ALL, "escalated") == []
    quality = {(q.stage, q.check): q for q in data.check_quality(engine, ALL)}
    assert quality[("input", "watch")].false_positives == 2
    assert quality[("input", "watch")].precision == 0.0
    assert quality[("input", "banned")].confirmed == 1
    assert quality[("input", "banned")].precision == 1.0
    steps = data.ruled_steps(engine, "watch", "input", ALL)
    assert {s.ruling for s in steps} == {"false_positive"}
    assert all(s.text and s.text[s.spans[0][1] : s.spans[0][2]] == "merger" for s in steps)
    trend = data.quality_trend(engine, ALL, bucket_s=3600)
    assert sum(p.false_positives for p in trend if p.check == "watch") == 2


def test_exports_stream_the_filtered_records(dash: Dash, engine: Engine) -> None:
    watch = RecordFilter(checks=("watch",))
    records = list(iter_audit_records(engine, watch, limit=10, page_size=1, newest_first=True))
    assert sorted(r.request_id for r in records) == sorted(dash.ids["flag"])
    assert len(list(iter_audit_records(engine, ALL, limit=3, page_size=2, newest_first=True))) == 3
    rows = list(csv.DictReader(io.StringIO(export.to_csv(records).decode())))
    assert [r["checks_acted"] for r in rows] == ["watch", "watch"]
    assert all("merger" in r["input_text"] for r in rows)
    lines = [orjson.loads(line) for line in export.to_jsonl(records).splitlines()]
    assert {line["request_id"] for line in lines} == set(dash.ids["flag"])
    assert all("inference_steps" in line and "output_decision" in line for line in lines)


def test_csv_cells_cannot_become_formulas() -> None:
    record = AuditRecord("req_x", datetime.now(UTC), "=cmd|' /C calc'!A0", "k", "/v1/chat/completions", "m",
                         False, "p", "v", input_text="+SUM(A1)")  # fmt: skip
    row = next(csv.DictReader(io.StringIO(export.to_csv([record]).decode())))
    assert row["tenant"].startswith("'=") and row["input_text"] == "'+SUM(A1)"


def test_policy_versions_are_stored_once(engine: Engine) -> None:
    first, created = data.record_policy_version(
        engine, name="p", version_hash="h1", yaml_text="a", created_by="x", note=None
    )
    again, created_again = data.record_policy_version(
        engine, name="p", version_hash="h1", yaml_text="a", created_by="y", note="n"
    )
    assert created and not created_again and again.id == first.id
    data.record_policy_version(engine, name="p", version_hash="h2", yaml_text="b", created_by="x", note=None)
    assert [v.version_hash for v in data.policy_versions(engine, "p")] == ["h2", "h1"]
    assert data.find_policy_version(engine, "p", "h2") is not None
    assert data.find_policy_version(engine, "p", "nope") is None


def test_replay_inputs_and_stored_ids(dash: Dash, engine: Engine) -> None:
    items = data.replay_inputs(engine, RecordFilter(checks=("watch",)), limit=10)
    assert {i.request_id for i in items} == set(dash.ids["flag"])
    assert all(i.verdict == "flag" and i.input_text and "merger" in i.input_text for i in items)
    assert data.stored_ids(engine, [dash.ids["pass"][0], "req_in_flight"]) == {dash.ids["pass"][0]}
    recent = data.recent_records(engine, since=datetime.now(UTC) - timedelta(hours=1), limit=3)
    assert len(recent) == 3 and all(r.steps for r in recent)


def _series(counts: list[tuple[int, int]]) -> list[data.SeriesPoint]:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    out = []
    for i, (passed, blocked) in enumerate(counts):
        at = start + timedelta(minutes=i)
        out += [data.SeriesPoint(at, "pass", passed, 0, 0), data.SeriesPoint(at, "block", blocked, 0, 0)]
    return out


def test_percentiles_over_many_requests_are_sampled(
    dash: Dash, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    exact = data.overview(engine, ALL, bucket_s=3600)
    monkeypatch.setattr(traffic, "PERCENTILE_SAMPLE", 5)
    sampled = data.overview(engine, ALL, bucket_s=3600)
    assert exact.sampled_every == 1
    assert sampled.sampled_every == -(-total(dash) // 5)
    assert sampled.total == exact.total  # counts are never sampled
    assert sampled.latency.p50 is not None


def test_a_spike_stands_out_and_a_steady_rate_does_not() -> None:
    steady = spikes.bucket_rates(_series([(95, 5)] * 10))
    assert spikes.find_spikes(steady) == []
    rates = spikes.bucket_rates(_series([(95, 5)] * 8 + [(40, 60)] + [(95, 5)]))
    [spike] = spikes.find_spikes(rates)
    assert spike.at == datetime(2025, 1, 1, 0, 8, tzinfo=UTC)
    assert spike.rate == 0.6 and spike.baseline == 0.05
    quiet = spikes.bucket_rates(_series([(95, 5)] * 8 + [(1, 2)]))
    assert spikes.find_spikes(quiet) == []  # too few requests to call it a spike


def _top(ov: data.Overview) -> list[tuple[str, str, str, bool, int]]:
    return sorted((c.name, c.stage, c.verdict, c.enforced, c.count) for c in ov.top_checks)


def test_top_checks_from_the_id_range_equal_the_join(
    dash: Dash, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counted without the join (the requests' steps as one key range) or with it: the same counts."""
    recent = RecordFilter(start=datetime.now(UTC) - timedelta(days=1))
    with engine.connect() as conn:
        assert traffic._id_range(conn, recent) is not None  # the gateway's ids are time-ordered
        assert traffic._id_range(conn, RecordFilter(start=recent.start, tenants=("acme",))) is None  # not a time filter
    fast = data.overview(engine, recent, bucket_s=3600)
    monkeypatch.setattr(traffic, "_id_range", lambda conn, f: None)
    joined = data.overview(engine, recent, bucket_s=3600)
    assert _top(fast) == _top(joined) and fast.top_checks


def test_ids_out_of_time_order_fall_back_to_the_join(db_url: str, engine: Engine, tmp_path: Path) -> None:
    """A request whose id sorts among the range's ids but which started long before the range:
    the id range would take it in, so it is not used, and the counts stay exact."""
    oldest_in_range = data.request_page(engine, ALL, limit=1000)[-1].request_id
    old = make_record(0, request_id=oldest_in_range + "0")  # sorts right after it
    old.started_at = datetime.now(UTC) - timedelta(days=3)
    old.finished_at = old.started_at + timedelta(seconds=1)
    writer = AuditWriter(db_url, spool_dir=tmp_path / "spool")
    writer.start()
    writer.submit(old)
    assert writer.flush(10)
    writer.close()
    everything = RecordFilter(start=datetime.now(UTC) - timedelta(days=4))
    recent = RecordFilter(start=datetime.now(UTC) - timedelta(days=1))
    with engine.connect() as conn:
        assert traffic._id_range(conn, everything) is not None
        assert traffic._id_range(conn, recent) is None

    def counts(f: RecordFilter) -> dict[tuple[str, str, str, bool], int]:
        return {row[:4]: row[4] for row in _top(data.overview(engine, f, bucket_s=3600, top=100))}

    before, after = counts(recent), counts(everything)
    assert after[("step_10", "reasoning", "flag", True)] == before.get(("step_10", "reasoning", "flag", True), 0) + 1
    assert after[("pii", "input", "redact", True)] == before.get(("pii", "input", "redact", True), 0) + 1


def test_check_names_are_the_checks_that_acted(engine: Engine) -> None:
    with engine.connect() as conn:
        rows = conn.execute(select(ACTED.c.name, ACTED.c.stage).distinct()).all()
    expected = sorted({n for n, s in rows if s not in NOT_CHECKS and not (s == "reasoning" and n.startswith("step "))})
    assert list(data.filter_options(engine).checks) == expected and expected
