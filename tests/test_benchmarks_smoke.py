"""The load benchmark runs end to end with a tiny request count and prints its tables.

Behaviour only: which rows and sections appear, what the JSON holds, how a variant that cannot
start is reported. No figure is asserted, since timings depend on the machine.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks._loadgen import RequestFailed, check_reply, percentile

REPO = Path(__file__).resolve().parents[1]
TINY = ["--requests", "3", "--concurrency", "2", "--max-seconds", "20", "--probe-requests", "2"]


def run_benchmark(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.load", *TINY, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


@pytest.mark.slow
def test_prints_tables_and_reports_a_variant_that_cannot_start(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: broken\ninput:\n  - check: no_such_check\n", encoding="utf-8")
    output = tmp_path / "load.json"

    done = run_benchmark(
        "--variants", "direct,warden-empty,warden-default", "--policy", str(broken), "--output", str(output)
    )

    assert done.returncode == 1, done.stderr
    out = done.stdout
    assert "== 200-token replies, streamed, 2 concurrent" in out
    assert "== 200-token replies, not streamed, one request at a time" in out
    assert re.search(r"Warden, default policy\s+FAILED, see problems below", out)
    assert "Warden, default policy: FAILED:" in out
    assert "no_such_check" in out
    assert '== targets from issue 3 ("How fast")' in out
    figures = json.loads(output.read_text(encoding="utf-8"))
    by_name = {v["name"]: v for v in figures["variants"]}
    assert list(by_name) == ["direct", "warden-empty", "warden-default"]
    assert by_name["warden-default"]["error"]
    empty = by_name["warden-empty"]
    assert empty["error"] is None
    assert empty["runs"]["streamed@2"]["completed"] == 3
    assert empty["runs"]["plain@1"]["completed"] == 2
    assert empty["startup"]["first_completion_s"] >= empty["startup"]["health_s"] > 0
    assert empty["rss_mib"] > 0


@pytest.mark.slow
def test_only_plain_runs_no_stream_and_exits_cleanly(tmp_path: Path) -> None:
    output = tmp_path / "load.json"

    done = run_benchmark("--only", "plain", "--variants", "direct,warden-regex", "--output", str(output))

    assert done.returncode == 0, done.stdout + done.stderr
    assert "== 200-token replies, streamed" not in done.stdout
    assert "Warden, regex-only policy" in done.stdout
    runs = json.loads(output.read_text(encoding="utf-8"))["variants"][1]["runs"]
    assert set(runs) == {"plain@2", "plain@1"}
    assert runs["plain@2"]["failed"] == 0


def test_percentile_is_nearest_rank() -> None:
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert percentile(values, 50) == 3.0
    assert percentile(values, 99) == 5.0
    assert percentile([], 50) is None


def test_a_reply_counts_only_when_it_ran_to_its_end() -> None:
    check_reply(b'{"choices":[{"finish_reason":"stop"}]}', stream=False)
    check_reply(b'data: {"choices":[{"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n', stream=True)
    with pytest.raises(RequestFailed, match="content_filter"):
        check_reply(b'{"choices":[{"finish_reason":"content_filter"}]}', stream=False)
    with pytest.raises(RequestFailed, match="DONE"):
        check_reply(b'data: {"choices":[{"finish_reason":"stop"}]}\n\n', stream=True)


@pytest.mark.slow
def test_per_upstream_table_runs_each_shape_and_the_proxy(tmp_path: Path) -> None:
    output = tmp_path / "load.json"

    done = run_benchmark("--per-upstream", "--upstreams", "ollama,spaced", "--rounds", "1", "--output", str(output))

    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "== per upstream: streamed, 2 concurrent, default policy" in out
    assert re.search(r"Ollama \(role in every delta, Go escapes\)\s+[\d.]+\s+[\d.]+\s+[\d.]+", out)
    assert re.search(r"json\.dumps defaults .*\s+[\d.]+\s+[\d.]+\s+[\d.]+", out)
    assert "vLLM" not in out and "== 200-token replies" not in out
    assert re.search(r"origin direct [\d.]+ r/s, via proxy [\d.]+ r/s", out)
    figures = json.loads(output.read_text(encoding="utf-8"))
    assert [u["shape"] for u in figures["upstreams"]] == ["ollama", "spaced"]
    assert all(u["failed"] == 0 and u["ratio"] > 0 for u in figures["upstreams"])
    assert figures["proxy"]["failed"] == 0 and figures["proxy"]["ratio"] > 0


@pytest.mark.slow
def test_baseline_checkout_is_measured_before_and_after_in_the_same_rounds(tmp_path: Path) -> None:
    # This checkout as its own baseline: what matters is that the second Warden runs, from the
    # given path, and that its figures sit beside the first's in the table and the JSON.
    output = tmp_path / "load.json"
    args = ("--per-upstream", "--upstreams", "openai", "--no-proxy", "--rounds", "1", "--output", str(output))

    done = run_benchmark(*args, "--baseline", str(REPO))

    assert done.returncode == 0, done.stdout + done.stderr
    assert "== before / after: Warden from the --baseline checkout" in done.stdout
    assert re.search(r"OpenAI \(compact.*\)(\s+[\d.]+){6}\s*$", done.stdout, re.M)
    (shape,) = json.loads(output.read_text(encoding="utf-8"))["upstreams"]
    assert len(shape["baseline_rps"]) == 1 and shape["baseline_ratio"] > 0
    assert shape["baseline_cpu_ms_per_request"] > 0

    refused = run_benchmark(*args, "--baseline", str(tmp_path))
    assert refused.returncode != 0 and "not a Warden checkout" in refused.stderr


TINY_COST = ("--requests", "2", "--repeats", "1")


def test_pipeline_cost_runs_a_shape_in_process() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.pipeline_cost", "--shapes", "ollama", "--reads", "1,3", *TINY_COST],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^ollama\s+[\d.]+ ms\s+[\d.]+ ms$", done.stdout, re.M), done.stdout


def test_detection_leave_out_tables_report_the_checks_as_they_run() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.detection", "--loso-only"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    title = "prompt_injection: leave one source out (the check: n-gram model, cues, quotes, decoding)"
    table = done.stdout.split(title)
    assert len(table) == 2, done.stdout
    pooled = re.search(r"pooled false-positive rate\s+([\d.]+)", table[1])
    assert pooled is not None and 0.0 <= float(pooled.group(1)) < 0.2
