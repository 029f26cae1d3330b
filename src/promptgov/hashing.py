"""The one place promptgov computes identities.

Every hash (prompt content, schema, evalset, render fingerprint, cache key) is the sha256 of the
canonical JSON of a plain value: keys sorted, compact separators, UTF-8, no NaN. YAML layout and
key order therefore never change a hash, while template text is hashed exactly as written. The
functions are :mod:`promptgov._portable._hashing`'s, the very file an exported package carries
to re-derive the same hashes.
"""

from __future__ import annotations

from promptgov._portable._hashing import PREFIX, bytes_hash, canonical_json, content_hash

__all__ = ["PREFIX", "bytes_hash", "canonical_json", "content_hash", "short"]


def short(h: str, n: int = 12) -> str:
    """A short display form of a hash (``sha256:abcdef123456`` → ``abcdef123456``)."""
    return h.removeprefix(PREFIX)[:n]
