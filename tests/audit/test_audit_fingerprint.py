"""Keyed fingerprints of redacted values."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest

from audit.fingerprint import FINGERPRINT_HEX_CHARS, fingerprint
from audit.keys import ENV_KEY, ENV_KEY_FILE


@pytest.fixture
def key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "keys" / "audit.key"
    monkeypatch.delenv(ENV_KEY, raising=False)
    monkeypatch.setenv(ENV_KEY_FILE, str(path))
    return path


def test_equal_values_match_and_different_values_do_not(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_KEY, "k1")
    card = fingerprint("4111 1111 1111 1111")
    assert card == fingerprint("4111 1111 1111 1111")
    assert card != fingerprint("4111 1111 1111 1112")
    assert len(card) == FINGERPRINT_HEX_CHARS
    int(card, 16)


def test_the_fingerprint_depends_on_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_KEY, "k1")
    first = fingerprint("alice@example.com")
    monkeypatch.setenv(ENV_KEY, "k2")
    assert fingerprint("alice@example.com") != first


def test_it_is_not_a_plain_hash_of_the_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_KEY, "k1")
    value = "123-45-6789"
    assert fingerprint(value) != hashlib.sha256(value.encode()).hexdigest()[:FINGERPRINT_HEX_CHARS]


def test_without_the_env_key_a_private_key_file_is_made_once(key_file: Path) -> None:
    first = fingerprint("555-0100")
    assert key_file.is_file()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(key_file.read_bytes()) == 32
    assert fingerprint("555-0100") == first
    assert list(key_file.parent.iterdir()) == [key_file]  # no temp files left behind


def test_a_different_install_gets_different_fingerprints(key_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = fingerprint("555-0100")
    monkeypatch.setenv(ENV_KEY_FILE, str(key_file.parent / "other.key"))
    assert fingerprint("555-0100") != first
