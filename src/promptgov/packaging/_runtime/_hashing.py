"""A stand-in: an exported package has ``promptgov/_portable/_hashing.py`` itself here."""

from promptgov._portable._hashing import PREFIX, bytes_hash, canonical_json, content_hash

__all__ = ["PREFIX", "bytes_hash", "canonical_json", "content_hash"]
