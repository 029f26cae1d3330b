"""Content hashes, exactly as promptgov computes them: sha256 of canonical JSON (keys sorted,
compact separators, UTF-8, no NaN). A stdlib-only copy of ``promptgov.hashing``, so that the
package can re-derive the hashes recorded in the workspace's lock without promptgov installed;
promptgov's tests prove the two agree."""

from __future__ import annotations

import hashlib
import json
from typing import Any

PREFIX = "sha256:"


def canonical_json(value: Any) -> str:
    """Serialise ``value`` to its canonical JSON text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def content_hash(value: Any) -> str:
    """``sha256:<hex>`` of the canonical JSON of ``value``."""
    return PREFIX + hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


def bytes_hash(data: bytes) -> str:
    """``sha256:<hex>`` of raw bytes (a file as installed)."""
    return PREFIX + hashlib.sha256(data).hexdigest()
