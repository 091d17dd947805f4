"""Policy files: strict validation with file/line errors, and `warden policy validate`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from policies.loader import load_policy
from policies.yamlio import YamlModelError

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def errors(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(YamlModelError) as info:
        load_policy(write(tmp_path, text))
    return [str(e) for e in info.value.errors]


def test_shipped_default_policy_is_valid() -> None:
    compiled = load_policy(REPO / "policies" / "default.yaml")
    assert compiled.name == "default" and len(compiled.version) == 16
    assert {b.spec.check for b in compiled.input} >= {"pii", "prompt_injection"}


def test_every_error_is_reported_with_its_line(tmp_path: Path) -> None:
    errs = errors(
        tmp_path,
        "name: p\nmode: sometimes\ninput:\n  - check: regex\n    patterns: ['x']\n"
        "    action: explode\n  - check: nope\nextra_key: 1\n",
    )
    text = "\n".join(errs)
    assert ":2: mode:" in text
    assert ":6: input[0].action:" in text
    assert ":7: input[1]:" in text and "unknown check 'nope'" in text
    assert ":8: extra_key:" in text


def test_unknown_check_option_is_an_error(tmp_path: Path) -> None:
    (err,) = errors(tmp_path, "name: p\ninput:\n  - {check: regex, patterns: ['x'], colour: red}\n")
    assert ":3:" in err and "colour" in err


def test_invalid_regex_is_an_error(tmp_path: Path) -> None:
    (err,) = errors(tmp_path, "name: p\ninput:\n  - {check: regex, patterns: ['(unclosed']}\n")
    assert ":3:" in err


def test_invalid_allow_pattern_is_an_error(tmp_path: Path) -> None:
    (err,) = errors(tmp_path, "name: p\ninput:\n  - {check: regex, patterns: ['x'], allow: ['re:[']}\n")
    assert "allow" in err


def test_broken_yaml(tmp_path: Path) -> None:
    (err,) = errors(tmp_path, "name: p\ninput: [\n  - x\n")
    assert "invalid YAML" in err


def test_whole_text_check_cannot_stream(tmp_path: Path) -> None:
    (err,) = errors(tmp_path, "name: p\nstream:\n  checks:\n    - {check: length, max_chars: 10}\n")
    assert "cannot run in the stream stage" in err


def test_yaml_tags_are_not_executed(tmp_path: Path) -> None:
    errs = errors(tmp_path, "name: !!python/object/apply:os.system ['echo hacked']\n")
    assert errs


def test_cli_validate(tmp_path: Path) -> None:
    good = REPO / "policies" / "default.yaml"
    bad = write(tmp_path, "name: p\nmode: sometimes\n")
    run = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "policy", "validate", str(good), str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 1
    assert "ok (policy 'default'" in run.stdout
    assert f"{bad}:2: mode:" in run.stderr
