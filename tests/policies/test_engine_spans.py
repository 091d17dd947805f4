"""The span types (policies/engines/spans.py) engines and checks share, and the layering: no
engine imports a check module."""

from __future__ import annotations

import ast
from pathlib import Path

from policies.checks import base
from policies.engines.spans import Span, StreamScan

ENGINES = Path(__file__).resolve().parents[2] / "policies" / "engines"


def test_the_check_interface_names_the_same_types() -> None:
    assert base.Span is Span and base.StreamScan is StreamScan
    assert Span(1, 4, "EMAIL") == base.Span(1, 4, "EMAIL", 1.0)


def test_no_engine_imports_a_check() -> None:
    for path in ENGINES.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            assert not any(n.startswith("policies.checks") for n in names), path.name
