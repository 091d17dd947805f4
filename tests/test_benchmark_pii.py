"""The pii benchmark runs end to end on a few rows, prints its tables and writes both engines.

Behaviour only: which sections and engines appear and what the JSON holds. No figure is
asserted, since timings depend on the machine; the scoring rule is tested on made-up spans.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.pii import Sample, score

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_prints_tables_and_writes_both_engines(tmp_path: Path) -> None:
    output = tmp_path / "pii.json"

    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.pii", "--limit", "20", "--min-seconds", "0", "--json", str(output)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "== recall / precision per entity" in out
    assert "== throughput" in out
    assert "== secrets check on noseyparker rule examples" in out
    for entity in ("EMAIL_ADDRESS", "CREDIT_CARD", "US_SSN", "PERSON"):
        assert entity in out
    figures = json.loads(output.read_text(encoding="utf-8"))
    assert {"warden", "warden+PERSON", "presidio", "presidio-6"} <= set(figures["engines"])
    for name in ("warden", "presidio"):
        engine = figures["engines"][name]
        assert engine["chars_per_s"] > 0
        assert engine["scores"]["CREDIT_CARD"]["gold"] >= 1
    assert figures["secrets"]["rows"] == 20
    assert figures["goal"]["target_ratio"] == 10.0


def test_a_gold_span_counts_as_found_only_when_a_span_of_its_type_overlaps() -> None:
    samples = [
        Sample("x" * 40, ((0, 10, "EMAIL_ADDRESS"), (20, 30, "US_SSN"))),
        Sample("y" * 40, ((5, 15, "EMAIL_ADDRESS"),)),
    ]
    predictions = [
        [(8, 12, "EMAIL_ADDRESS"), (20, 30, "PHONE_NUMBER"), (35, 39, "EMAIL_ADDRESS")],
        [(15, 20, "EMAIL_ADDRESS")],  # touches the end of the gold span: half-open, no overlap
    ]

    email, ssn, phone = score(samples, predictions, ("EMAIL_ADDRESS", "US_SSN", "PHONE_NUMBER"))

    assert (email.gold, email.found, email.predicted, email.correct) == (2, 1, 3, 1)
    assert email.recall == 0.5
    assert email.precision == pytest.approx(1 / 3)
    assert (ssn.recall, ssn.precision) == (0.0, None)
    assert (phone.gold, phone.recall, phone.precision) == (0, None, 0.0)
