"""The one place promptgov computes identities.

Every hash (prompt content, schema, evalset, render fingerprint, cache key) is the sha256 of the
canonical JSON of a plain value: keys sorted, compact separators, UTF-8, no NaN. YAML layout and
key order therefore never change a hash, while template text is hashed exactly as written.
"""

from __future__ import annotations

import hashlib
import json

PREFIX = "sha256:"


def canonical_json(value: object) -> str:
    """Serialise ``value`` to its canonical JSON text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def content_hash(value: object) -> str:
    """``sha256:<hex>`` of the canonical JSON of ``value``."""
    return PREFIX + hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


def short(h: str, n: int = 12) -> str:
    """A short display form of a hash (``sha256:abcdef123456`` → ``abcdef123456``)."""
    return h.removeprefix(PREFIX)[:n]
