"""Keyed fingerprints of redacted values.

With ``audit.store_text: redacted`` a value a check redacted is stored only as its entity
type and ``fingerprint(value)``: HMAC-SHA256 under a key derived from ``WARDEN_AUDIT_KEY``
(or, when that is unset, from a random per-install key file; see ``audit.keys``), hex,
truncated to 128 bits (32 hex characters). Equal values give equal fingerprints, so a
reviewer can see that two requests carried the same card number; without the key nobody can
test guesses against a fingerprint, which a plain hash of a 16-digit number would allow.
"""

from __future__ import annotations

import hmac

from audit.keys import fingerprint_key

FINGERPRINT_HEX_CHARS = 32


def fingerprint(value: str) -> str:
    digest = hmac.digest(fingerprint_key(), value.encode("utf-8", "surrogatepass"), "sha256")
    return digest.hex()[:FINGERPRINT_HEX_CHARS]
