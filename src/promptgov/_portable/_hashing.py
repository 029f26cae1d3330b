"""Every content hash of promptgov and of the packages it exports: the sha256 of the canonical
JSON of a plain value (keys sorted, compact separators, UTF-8, no NaN), so that YAML layout and
key order never change a hash, while text is hashed exactly as written. An exported package
re-derives with it the hashes the workspace's lock recorded, without promptgov installed.
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
    return bytes_hash(canonical_json(value).encode("utf-8"))


def bytes_hash(data: bytes) -> str:
    """``sha256:<hex>`` of raw bytes (a file as installed)."""
    return PREFIX + hashlib.sha256(data).hexdigest()
