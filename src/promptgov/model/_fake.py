"""A scripted, deterministic, fault-injecting model for tests and benchmarks.

:class:`FakeModel` answers every request with a scripted answer (by default a minimal valid JSON
object built from the request's response schema) and injects rate limits, timeouts, server
errors and malformed output at configured rates. Every decision is a pure function of
``(seed, request key, attempt number for that key)``, never of thread scheduling, so an eval run
at concurrency 16 sees exactly the same faults as a serial one, and a retry of a request that
failed transiently draws afresh (and so may succeed).

:func:`malform` turns valid JSON text into each malformed variant the output parser must cope
with: ``fenced``, ``truncated``, ``single_quotes``, ``extra_keys`` and ``wrong_enum_case``.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from promptgov.errors import ModelError, ModelTimeout, RateLimited, ServerError
from promptgov.hashing import content_hash
from promptgov.model._base import Completion, Request, Usage

MALFORMED_KINDS: tuple[str, ...] = (
    "fenced", "truncated", "single_quotes", "extra_keys", "wrong_enum_case")
"""Every malformed-output variant :func:`malform` can produce."""

EXTRA_KEY = "unexpected_field"
"""The key :func:`malform` adds for ``extra_keys`` (suffixed with ``_`` if the schema has it)."""

Answer = Callable[[Request], "str | dict[str, Any]"] | str | dict[str, Any] | None
UsageSpec = Usage | Callable[[Request, str], Usage] | None


class FakeModel:
    """A deterministic scripted model that injects faults at configured rates.

    Each call draws one uniform number ``u`` from ``random.Random(hash(seed, key, attempt))``
    where ``attempt`` counts earlier calls with the same request key. The rates are consecutive
    bands of ``u`` (rate limit, then timeout, then server error, then malformed), so each rate is
    a fraction of *all* calls and their sum must not exceed 1.

    ``self.calls`` records ``(request, outcome)`` for every call, where outcome is ``"ok"``,
    ``"rate_limit"``, ``"timeout"``, ``"server_error"``, ``"malformed:<kind>"``, or the ``kind``
    of a :class:`~promptgov.errors.ModelError` raised by an ``answer`` callable.
    """

    def __init__(self, *, answer: Answer = None, latency_s: float = 0.0,
                 rate_limit_rate: float = 0.0, timeout_rate: float = 0.0,
                 server_error_rate: float = 0.0, malformed_rate: float = 0.0,
                 malformed_kinds: tuple[str, ...] = MALFORMED_KINDS, seed: int = 0,
                 id: str = "fake/scripted", usage: UsageSpec = None,
                 cost_per_call_usd: float = 0.0):
        rates = {"rate_limit_rate": rate_limit_rate, "timeout_rate": timeout_rate,
                 "server_error_rate": server_error_rate, "malformed_rate": malformed_rate}
        for name, r in rates.items():
            if not 0.0 <= r <= 1.0:
                raise ValueError(f"FakeModel: {name}={r} is not between 0 and 1")
        if sum(rates.values()) > 1.0 + 1e-9:
            raise ValueError(f"FakeModel: fault rates sum to {sum(rates.values())} > 1")
        unknown = [k for k in malformed_kinds if k not in MALFORMED_KINDS]
        if unknown or (malformed_rate > 0 and not malformed_kinds):
            raise ValueError(f"FakeModel: malformed_kinds must be a non-empty subset of "
                             f"{MALFORMED_KINDS}, got {tuple(malformed_kinds)}")
        if latency_s < 0:
            raise ValueError(f"FakeModel: latency_s={latency_s} is negative")
        self.id = id
        self.answer = answer
        self.latency_s = float(latency_s)
        self.rate_limit_rate = rate_limit_rate
        self.timeout_rate = timeout_rate
        self.server_error_rate = server_error_rate
        self.malformed_rate = malformed_rate
        self.malformed_kinds = tuple(malformed_kinds)
        self.seed = seed
        self.usage = usage
        self.cost_per_call_usd = cost_per_call_usd
        self.calls: list[tuple[Request, str]] = []
        self._attempts: dict[str, int] = {}
        self._lock = threading.Lock()

    # -- bookkeeping ----------------------------------------------------------------------

    @property
    def n_calls(self) -> int:
        with self._lock:
            return len(self.calls)

    def attempts(self, request: Request) -> int:
        """How many times ``request`` (by key) has been called so far."""
        with self._lock:
            return self._attempts.get(request.key(self.id), 0)

    def reset(self) -> None:
        """Forget all calls and attempt counters (the next call of every key is attempt 0)."""
        with self._lock:
            self.calls.clear()
            self._attempts.clear()

    def _record(self, request: Request, outcome: str) -> None:
        with self._lock:
            self.calls.append((request, outcome))

    # -- decisions ------------------------------------------------------------------------

    def outcome_for(self, key: str, attempt: int) -> str:
        """The outcome of attempt ``attempt`` (0-based) of the request with cache key ``key``:
        ``ok``, ``rate_limit``, ``timeout``, ``server_error`` or ``malformed:<kind>``.

        A pure function of ``(seed, key, attempt)`` and the configured rates. For a request
        whose valid answer is not a JSON object/array, ``malformed:<kind>`` may still degrade
        to plain text handling (see :meth:`complete`)."""
        rng = random.Random(int(content_hash([self.seed, key, attempt])[7:23], 16))
        u = rng.random()
        for outcome, rate in (("rate_limit", self.rate_limit_rate),
                              ("timeout", self.timeout_rate),
                              ("server_error", self.server_error_rate)):
            if u < rate:
                return outcome
            u -= rate
        if u < self.malformed_rate:
            return "malformed:" + self.malformed_kinds[rng.randrange(len(self.malformed_kinds))]
        return "ok"

    # -- the Model interface --------------------------------------------------------------

    def complete(self, request: Request) -> Completion:
        key = request.key(self.id)
        with self._lock:
            attempt = self._attempts.get(key, 0)
            self._attempts[key] = attempt + 1
        outcome = self.outcome_for(key, attempt)

        if outcome == "rate_limit":
            self._record(request, outcome)
            raise RateLimited(f"{self.id}: injected rate limit (attempt {attempt})",
                              model=self.id, retry_after=0.0)
        if outcome == "server_error":
            self._record(request, outcome)
            raise ServerError(f"{self.id}: injected server error (attempt {attempt})",
                              model=self.id)
        if outcome == "timeout":
            self._record(request, outcome)
            wait = min(self.latency_s, request.timeout_s)
            if wait > 0:
                time.sleep(wait)
            raise ModelTimeout(f"{self.id}: injected timeout after {request.timeout_s}s "
                               f"(attempt {attempt})", model=self.id)

        try:
            text = self._answer_text(request)
        except ModelError as e:
            self._record(request, e.kind)
            raise
        if outcome.startswith("malformed:"):
            text, outcome = _apply_malformation(text, outcome.split(":", 1)[1],
                                                request.response_schema)
        if self.latency_s > 0:
            time.sleep(self.latency_s)
        self._record(request, outcome)
        return Completion(text=text, model=self.id, usage=self._usage(request, text),
                          latency_s=self.latency_s, cost_usd=self.cost_per_call_usd)

    def _answer_text(self, request: Request) -> str:
        a = self.answer
        if callable(a):
            a = a(request)
        if a is None:
            if request.response_schema is None:
                return "ok"
            a = minimal_instance(request.response_schema)
        return a if isinstance(a, str) else json.dumps(a, ensure_ascii=False)

    def _usage(self, request: Request, text: str) -> Usage:
        if isinstance(self.usage, Usage):
            return self.usage
        if callable(self.usage):
            return self.usage(request, text)
        chars = sum(len(str(m.get("content", ""))) for m in request.messages)
        return Usage(prompt_tokens=chars // 4, completion_tokens=len(text) // 4)

    def __repr__(self) -> str:
        return f"FakeModel(id={self.id!r}, seed={self.seed}, calls={len(self.calls)})"


def _apply_malformation(text: str, kind: str, schema: dict[str, Any] | None) -> tuple[str, str]:
    """Malform ``text``; if ``kind`` needs a JSON object and the text is not one, fall back to
    ``truncated`` (which works on any text)."""
    try:
        return malform(text, kind, schema), f"malformed:{kind}"
    except ValueError:
        return malform(text, "truncated", schema), "malformed:truncated"


# -- schema helpers -------------------------------------------------------------------------

def _resolve(node: Any, root: dict[str, Any]) -> dict[str, Any]:
    """Follow a local ``$ref`` (``#/$defs/X`` or ``#/definitions/X``) to its target."""
    seen = 0
    while isinstance(node, dict) and isinstance(node.get("$ref"), str) and seen < 32:
        ref = node["$ref"]
        if not ref.startswith("#/"):
            break
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        seen += 1
    return node if isinstance(node, dict) else {}


def _alternatives(node: dict[str, Any], root: dict[str, Any]) -> list[dict[str, Any]]:
    node = _resolve(node, root)
    alts = node.get("anyOf") or node.get("oneOf")
    if not alts:
        return [node]
    return [v for a in alts for v in _alternatives(a, root)]


def _is_nullable(node: dict[str, Any], root: dict[str, Any]) -> bool:
    for alt in _alternatives(node, root):
        t = alt.get("type")
        if t == "null" or (isinstance(t, list) and "null" in t):
            return True
        if "enum" in alt and None in alt["enum"]:
            return True
    return False


def minimal_instance(schema: dict[str, Any], _node: dict[str, Any] | None = None,
                     _depth: int = 0) -> Any:
    """A minimal value valid against ``schema``: the first enum value, ``0``, ``""``, ``false``,
    ``[]``, ``null`` for anything nullable, and an object with every listed property."""
    root = schema
    node = _resolve(schema if _node is None else _node, root)
    if _depth > 32:
        return None
    if "const" in node:
        return node["const"]
    if "enum" in node and node["enum"]:
        return node["enum"][0]
    if _is_nullable(node, root):
        return None
    if node.get("anyOf") or node.get("oneOf"):
        return minimal_instance(root, (node.get("anyOf") or node.get("oneOf"))[0], _depth + 1)
    if node.get("allOf"):
        merged: dict[str, Any] = {}
        for part in node["allOf"]:
            part = _resolve(part, root)
            for k, v in part.items():
                if k in ("properties",) and k in merged:
                    merged[k] = {**merged[k], **v}
                elif k == "required" and k in merged:
                    merged[k] = list(merged[k]) + [r for r in v if r not in merged[k]]
                else:
                    merged[k] = v
        return minimal_instance(root, merged, _depth + 1)
    t = node.get("type")
    if isinstance(t, list):
        t = t[0] if t else None
    if t is None:
        t = "object" if "properties" in node else "string"
    if t == "object":
        return {name: minimal_instance(root, sub, _depth + 1)
                for name, sub in node.get("properties", {}).items()}
    if t == "array":
        n = int(node.get("minItems", 0))
        return [minimal_instance(root, node.get("items", {}), _depth + 1) for _ in range(n)]
    if t == "string":
        return "x" * int(node.get("minLength", 0))
    if t in ("integer", "number"):
        value: int | float = 0
        bound = node.get("minimum")
        if isinstance(bound, int | float) and value < bound:
            value = bound
        bound = node.get("exclusiveMinimum")
        if isinstance(bound, int | float) and not isinstance(bound, bool) and value <= bound:
            value = bound + 1
        bound = node.get("maximum")
        if isinstance(bound, int | float) and value > bound:
            value = bound
        bound = node.get("exclusiveMaximum")
        if isinstance(bound, int | float) and not isinstance(bound, bool) and value >= bound:
            value = bound - 1
        return int(value) if t == "integer" else value
    if t == "boolean":
        return False
    return None


# -- malformation -------------------------------------------------------------------------

def malform(text: str, kind: str, schema: dict[str, Any] | None = None) -> str:
    """Return a malformed variant of the valid JSON ``text``.

    - ``fenced``: wrapped in a Markdown ```` ```json ```` fence;
    - ``truncated``: cut off part-way (for an object, before its closing brace);
    - ``single_quotes``: the Python ``repr`` of the parsed value (``{'a': 'x', 'b': None}``);
    - ``extra_keys``: the object with an extra key (:data:`EXTRA_KEY`) not in the schema;
    - ``wrong_enum_case``: every string value constrained by an enum in ``schema`` upper-cased
      (swap-cased if already upper case); without a schema, every string value.

    ``fenced`` and ``truncated`` work on any text; the others need ``text`` to be JSON
    (``extra_keys``: a JSON object) and raise ``ValueError`` otherwise.
    """
    if kind == "fenced":
        return f"```json\n{text}\n```"
    if kind == "truncated":
        s = text.rstrip()
        if len(s) <= 1:
            return s[:0] if s else s
        cut = max(1, min(len(s) - 1, (len(s) * 2) // 3))
        return s[:cut]
    if kind not in MALFORMED_KINDS:
        raise ValueError(f"malform: unknown kind {kind!r}; expected one of {MALFORMED_KINDS}")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"malform({kind!r}) needs valid JSON text: {e}") from None
    if kind == "single_quotes":
        return repr(value)
    if kind == "extra_keys":
        if not isinstance(value, dict):
            raise ValueError("malform('extra_keys') needs a JSON object")
        props = (schema or {}).get("properties", {}) if isinstance(schema, dict) else {}
        name = EXTRA_KEY
        while name in value or name in props:
            name += "_"
        return json.dumps({**value, name: "extra"}, ensure_ascii=False)
    # wrong_enum_case
    root = schema or {}
    return json.dumps(_shout(value, root if schema is not None else None, root),
                      ensure_ascii=False)


def _wrong_case(s: str) -> str:
    return s.upper() if s.upper() != s else s.swapcase()


def _shout(value: Any, node: dict[str, Any] | None, root: dict[str, Any]) -> Any:
    """Wrong-case the enum string values of ``value``, walking ``node`` alongside it
    (``node=None``: no schema, so every string value)."""
    if node is None:
        if isinstance(value, str):
            return _wrong_case(value)
        if isinstance(value, dict):
            return {k: _shout(v, None, root) for k, v in value.items()}
        if isinstance(value, list):
            return [_shout(v, None, root) for v in value]
        return value
    alts = _alternatives(node, root)
    if isinstance(value, str):
        for alt in alts:
            if value in (alt.get("enum") or []) or alt.get("const", object()) == value:
                return _wrong_case(value)
        return value
    if isinstance(value, dict):
        props: dict[str, Any] = {}
        extra: Any = None
        for alt in alts:
            if isinstance(alt.get("properties"), dict):
                props = {**alt["properties"], **props}
            if isinstance(alt.get("additionalProperties"), dict):
                extra = alt["additionalProperties"]
        out = {}
        for k, v in value.items():
            sub = props.get(k, extra)
            out[k] = _shout(v, sub, root) if isinstance(sub, dict) else v
        return out
    if isinstance(value, list):
        items = next((a["items"] for a in alts if isinstance(a.get("items"), dict)), None)
        return [_shout(v, items, root) if items is not None else v for v in value]
    return value
