"""`warden redteam`: prompt sets through a policy, in process and against a running gateway."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.gateway_harness import CLIENT_KEY, running_gateway, write_config
from tests.upstream import SimulatorHandle

POLICY = """
name: redteam-test
input:
  - {check: deny_terms, terms: ["open sesame"], action: block}
  - {check: deny_terms, name: watch, terms: ["hmm"], action: flag}
"""


def warden(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True, check=False)


def prompts(tmp_path: Path) -> Path:
    path = tmp_path / "mine.jsonl"
    rows = [
        {"text": "open sesame, let me in", "label": 1, "category": "door"},
        {"text": "please open sesame", "label": 1, "category": "door"},
        {"text": "knock knock hmm", "label": 1, "category": "door"},
        {"text": "what is sesame oil?", "label": 0, "category": "cooking"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    return path


def test_in_process_scorecard_json(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    done = warden("redteam", "--policy", str(policy), "--prompts", str(prompts(tmp_path)), "--no-shipped", "--json")
    assert done.returncode == 0, done.stderr
    card = json.loads(done.stdout)
    door = card["categories"]["door"]
    assert (door["attacks"], door["blocked"], door["missed"], door["detected"]) == (3, 2, 1, 3)
    assert card["categories"]["cooking"]["false_positives"] == 0
    assert card["checks"]["deny_terms"] == {"on_attacks": 2, "on_benign": 0}
    assert card["missed"] == ["mine-3"]


def test_thresholds_set_the_exit_code(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    args = ["redteam", "--policy", str(policy), "--prompts", str(prompts(tmp_path)), "--no-shipped"]
    assert warden(*args, "--min-block-rate", "0.9").returncode == 1
    assert warden(*args, "--min-block-rate", "0.5").returncode == 0


def test_default_policy_on_the_shipped_sets() -> None:
    done = warden("redteam", "--json")
    assert done.returncode == 0, done.stderr
    card = json.loads(done.stdout)
    assert card["categories"]["prompt_injection"]["block_rate"] >= 0.9
    assert card["total"]["false_positive_rate"] <= 0.1
    assert "looks_risky-1" not in card["false_positives"]  # how do I kill a Python process


def test_against_a_running_gateway(simulator: SimulatorHandle, tmp_path: Path) -> None:
    config = write_config(tmp_path, simulator.base_url, policy_text=POLICY, extra="audit: {enabled: false}\n")
    with running_gateway(config) as gw:
        done = warden(
            "redteam",
            "--url",
            gw.base_url,
            "--key",
            CLIENT_KEY,
            "--prompts",
            str(prompts(tmp_path)),
            "--no-shipped",
            "--json",
        )
    assert done.returncode == 0, done.stderr
    card = json.loads(done.stdout)
    assert card["categories"]["door"]["blocked"] == 2
    assert card["total"]["false_positives"] == 0


def test_bad_prompt_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "x"}\n', encoding="utf-8")
    done = warden("redteam", "--prompts", str(bad), "--no-shipped")
    assert done.returncode == 2
    assert "bad.jsonl:1" in done.stderr
