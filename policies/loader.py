"""Read and compile a policy file; every problem is a ``YamlModelError`` with file and line."""

from __future__ import annotations

from pathlib import Path

from policies.compiled import CompiledPolicy, compile_policy
from policies.schema import Policy
from policies.yamlio import FieldError, YamlModelError, load_model


def load_policy_text(text: str, source: str) -> CompiledPolicy:
    policy = load_model(Policy, text, source)
    try:
        return compile_policy(policy, text, source)
    except (ValueError, TypeError, ImportError) as exc:  # a check refused its options at build time
        raise YamlModelError([FieldError(source, None, "", f"cannot build checks: {exc}")]) from None


def load_policy(path: Path) -> CompiledPolicy:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise YamlModelError([FieldError(str(path), None, "", f"cannot read: {exc.strerror}")]) from None
    except UnicodeDecodeError:
        raise YamlModelError([FieldError(str(path), None, "", "not valid UTF-8")]) from None
    return load_policy_text(text, str(path))
