"""One model call's records: the :class:`Request` in (its :meth:`~Request.key` is the response
cache's key), the :class:`Completion` with its :class:`Usage` out.

Every model of the workbench takes and returns these (``promptgov.model`` re-exports them), and
so does the offline baseline ``local/knn`` vendored into an exported package.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ._hashing import content_hash


@dataclass(frozen=True)
class Request:
    """Everything that determines a model's answer; its :attr:`key` is the cache key."""

    messages: tuple[dict[str, str], ...]
    response_schema: dict[str, Any] | None = None
    """JSON Schema of the expected output, sent as the provider's ``response_format``."""
    schema_name: str | None = None
    temperature: float = 0.0
    max_tokens: int = 512
    sample: int = 0
    """Index of a repeated sample: at temperature > 0, samples 0..n-1 are distinct answers."""
    timeout_s: float = 60.0
    prefix_len: int = 0
    """How many leading messages are the prompt's fixed part (system + demos)."""
    prefix_hash: str | None = None
    """``content_hash`` of ``messages[:prefix_len]`` when the caller already knows it: a prompt
    with 770 demos should not be re-hashed for every case."""
    label: str | None = None
    """What asked (``ticket_triage@2``) and for which case: for error messages, never hashed."""
    case_id: str | None = None

    def key_parts(self, model_id: str) -> dict[str, Any]:
        """What the cache key is made of (``ResponseCache.explain`` compares these)."""
        prefix = self.prefix_hash or content_hash(list(self.messages[:self.prefix_len]))
        return {"model": model_id, "temperature": self.temperature,
                "max_tokens": self.max_tokens, "prefix": prefix,
                "messages": list(self.messages[self.prefix_len:]),
                "response_schema": _schema_hash(self.response_schema), "sample": self.sample}

    def key(self, model_id: str) -> str:
        """``content_hash`` of :meth:`key_parts`; the model-independent part is hashed once per
        request object (the engine, the cache and a recorder all ask for it)."""
        body = self.__dict__.get("_body_hash")
        if body is None:
            parts = self.key_parts("")
            del parts["model"]
            body = content_hash(parts)
            object.__setattr__(self, "_body_hash", body)  # a cache, not state: frozen is kept
        return content_hash({"model": model_id, "body": body})


_SCHEMA_HASHES: dict[int, tuple[dict[str, Any], str]] = {}


def _schema_hash(schema: dict[str, Any] | None) -> str | None:
    """Hash of a response schema, memoised by identity: an eval sends the same schema object
    with every case, and re-serialising it per case was a measurable share of the overhead."""
    if schema is None:
        return None
    hit = _SCHEMA_HASHES.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1]
    if len(_SCHEMA_HASHES) > 256:
        _SCHEMA_HASHES.clear()
    h = content_hash(schema)
    _SCHEMA_HASHES[id(schema)] = (schema, h)
    return h


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Completion:
    """A model's answer to one request."""

    text: str
    model: str
    usage: Usage = field(default_factory=Usage)
    latency_s: float = 0.0
    cost_usd: float = 0.0
    cached: bool = False
    """True when the answer came from the response cache (no call was made, nothing paid)."""
    finish_reason: str | None = None
    """Why the provider stopped (``stop``, ``length``, ...), when it said."""
