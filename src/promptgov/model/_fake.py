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
from collections.abc import Callable, Iterable
from typing import Any

from promptgov._portable._jsonschema import resolve
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
    """``node`` with its local ``$ref`` followed; ``{}`` for a node that is no object."""
    node = resolve(node, root)
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
    alts = node.get("anyOf") or node.get("oneOf")
    if alts:
        return minimal_instance(root, alts[0], _depth + 1)
    if node.get("allOf"):
        return minimal_instance(root, _merge_all_of(node["allOf"], root), _depth + 1)
    t = _instance_type(node)
    # A malformed ``type`` (a dict is unhashable) gives None, as an unknown type name does.
    build = _MINIMAL_BY_TYPE.get(t) if isinstance(t, str) else None
    return build(node, root, _depth) if build is not None else None


def _merge_all_of(parts: Iterable[Any], root: dict[str, Any]) -> dict[str, Any]:
    """One schema from the parts of an ``allOf``: later keys win, except that ``properties``
    and ``required`` accumulate."""
    merged: dict[str, Any] = {}
    for part in parts:
        for k, v in _resolve(part, root).items():
            if k in ("properties",) and k in merged:
                merged[k] = {**merged[k], **v}
            elif k == "required" and k in merged:
                merged[k] = list(merged[k]) + [r for r in v if r not in merged[k]]
            else:
                merged[k] = v
    return merged


def _instance_type(node: dict[str, Any]) -> Any:
    """The node's ``type`` (the first of a list); untyped: ``object`` with properties, else
    ``string``."""
    t = node.get("type")
    if isinstance(t, list):
        t = t[0] if t else None
    if t is None:
        t = "object" if "properties" in node else "string"
    return t


def _minimal_object(node: dict[str, Any], root: dict[str, Any], depth: int) -> dict[str, Any]:
    return {name: minimal_instance(root, sub, depth + 1)
            for name, sub in node.get("properties", {}).items()}


def _minimal_array(node: dict[str, Any], root: dict[str, Any], depth: int) -> list[Any]:
    n = int(node.get("minItems", 0))
    return [minimal_instance(root, node.get("items", {}), depth + 1) for _ in range(n)]


def _minimal_string(node: dict[str, Any], root: dict[str, Any], depth: int) -> str:
    return "x" * int(node.get("minLength", 0))


def _minimal_integer(node: dict[str, Any], root: dict[str, Any], depth: int) -> int:
    return int(_smallest_in_bounds(node))


def _minimal_number(node: dict[str, Any], root: dict[str, Any], depth: int) -> int | float:
    return _smallest_in_bounds(node)


def _minimal_boolean(node: dict[str, Any], root: dict[str, Any], depth: int) -> bool:
    return False


_MINIMAL_BY_TYPE: dict[str, Callable[[dict[str, Any], dict[str, Any], int], Any]] = {
    "object": _minimal_object, "array": _minimal_array, "string": _minimal_string,
    "integer": _minimal_integer, "number": _minimal_number, "boolean": _minimal_boolean}
"""The minimal value of each JSON Schema type; ``null`` (and anything unknown) is ``None``."""


def _bound(node: dict[str, Any], key: str, *, exclusive: bool) -> int | float | None:
    """A numeric bound of ``node``. ``minimum``/``maximum`` accept a bool (it is an int); the
    exclusive bounds do not (``exclusiveMinimum: true`` is draft-4 syntax, not a number)."""
    bound = node.get(key)
    if isinstance(bound, int | float) and not (exclusive and isinstance(bound, bool)):
        return bound
    return None


def _smallest_in_bounds(node: dict[str, Any]) -> int | float:
    """0, moved into the node's minimum/maximum bounds (minimum first, maximum last)."""
    value: int | float = 0
    bound = _bound(node, "minimum", exclusive=False)
    if bound is not None and value < bound:
        value = bound
    bound = _bound(node, "exclusiveMinimum", exclusive=True)
    if bound is not None and value <= bound:
        value = bound + 1
    bound = _bound(node, "maximum", exclusive=False)
    if bound is not None and value > bound:
        value = bound
    bound = _bound(node, "exclusiveMaximum", exclusive=True)
    if bound is not None and value >= bound:
        value = bound - 1
    return value


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
        return _truncate(text)
    if kind not in MALFORMED_KINDS:
        raise ValueError(f"malform: unknown kind {kind!r}; expected one of {MALFORMED_KINDS}")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"malform({kind!r}) needs valid JSON text: {e}") from None
    if kind == "single_quotes":
        return repr(value)
    if kind == "extra_keys":
        return _with_extra_key(value, schema)
    # wrong_enum_case
    root = schema or {}
    return json.dumps(_shout(value, root if schema is not None else None, root),
                      ensure_ascii=False)


def _truncate(text: str) -> str:
    """``text`` cut off about two thirds in, never empty unless it was at most one character."""
    s = text.rstrip()
    if len(s) <= 1:
        return s[:0] if s else s
    cut = max(1, min(len(s) - 1, (len(s) * 2) // 3))
    return s[:cut]


def _with_extra_key(value: Any, schema: dict[str, Any] | None) -> str:
    """The JSON object ``value`` with :data:`EXTRA_KEY` (suffixed until it is in neither the
    object nor the schema's properties) added."""
    if not isinstance(value, dict):
        raise ValueError("malform('extra_keys') needs a JSON object")
    props = (schema or {}).get("properties", {}) if isinstance(schema, dict) else {}
    name = EXTRA_KEY
    while name in value or name in props:
        name += "_"
    return json.dumps({**value, name: "extra"}, ensure_ascii=False)


def _wrong_case(s: str) -> str:
    return s.upper() if s.upper() != s else s.swapcase()


def _shout(value: Any, node: dict[str, Any] | None, root: dict[str, Any]) -> Any:
    """Wrong-case the enum string values of ``value``, walking ``node`` alongside it
    (``node=None``: no schema, so every string value)."""
    if node is None:
        return _shout_every_string(value)
    alts = _alternatives(node, root)
    if isinstance(value, str):
        return _wrong_case(value) if _is_enum_member(value, alts) else value
    if isinstance(value, dict):
        return _shout_object(value, alts, root)
    if isinstance(value, list):
        items = next((a["items"] for a in alts if isinstance(a.get("items"), dict)), None)
        return [_shout(v, items, root) if items is not None else v for v in value]
    return value


def _shout_every_string(value: Any) -> Any:
    if isinstance(value, str):
        return _wrong_case(value)
    if isinstance(value, dict):
        return {k: _shout_every_string(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shout_every_string(v) for v in value]
    return value


def _is_enum_member(value: str, alts: list[dict[str, Any]]) -> bool:
    """Whether some alternative constrains ``value`` by an ``enum`` or a ``const``."""
    for alt in alts:
        if value in (alt.get("enum") or []) or alt.get("const", object()) == value:
            return True
    return False


def _shout_object(value: dict[str, Any], alts: list[dict[str, Any]],
                  root: dict[str, Any]) -> dict[str, Any]:
    """Wrong-case the enum values of an object's properties; a property with no schema of its
    own (and no ``additionalProperties`` schema) is kept as it is."""
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
