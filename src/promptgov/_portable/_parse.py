"""Model text → a schema-valid object and the repairs it took, or :class:`OutputError` with its
kind.

Lenient where the intent is unambiguous (a fenced block, Python-style quotes, an unknown extra
key, an enum value in the wrong case), strict everywhere else: a truncated or non-JSON answer is
``invalid_json``, a well-formed object that breaks the contract is ``schema_violation``. Each
repair is named (``fenced``, ``single_quotes``, ``extra_keys``, ``enum_case``) so that a per-case
record shows what the model actually did. The workbench's evaluations and an exported package's
functions parse with this one function, so an answer accepted in one is accepted in the other.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from ._jsonschema import enum_fields

T = TypeVar("T")
_FENCE = re.compile(r"^\s*```[a-zA-Z0-9_-]*\s*\n?(.*?)\n?\s*```\s*$", re.S)


class OutputError(ValueError):
    """The answer is no JSON object (``kind`` ``invalid_json``) or breaks the schema
    (``schema_violation``); the caller raises its own ``InvalidOutput`` from it."""

    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind


def parse_output(text: str, json_schema: Mapping[str, Any],
                 validate: Callable[[dict[str, Any]], T]) -> tuple[T, list[str]]:
    """Parse ``text``, repair it against ``json_schema`` and validate it with ``validate`` (a
    pydantic model's ``model_validate``: a ``ValueError`` from it is a schema violation);
    returns ``(object, repairs)``."""
    data, repairs = _repaired(text, json_schema)
    try:
        return validate(data), repairs
    except ValueError as e:  # pydantic's ValidationError is a ValueError
        raise OutputError(_violation(e), "schema_violation") from None


def _repaired(text: str, json_schema: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    repairs: list[str] = []
    raw = text.strip()
    m = _FENCE.match(raw)
    if m:
        raw = m.group(1).strip()
        repairs.append("fenced")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, an over-long int, deep nesting
        data = _python_literal(raw)
        if data is None:
            why = f"{e.msg} at char {e.pos}" if isinstance(e, json.JSONDecodeError) else \
                f"{type(e).__name__}: {str(e)[:80]}"
            raise OutputError(f"not valid JSON: {why}: {_clip(text)}", "invalid_json") from None
        repairs.append("single_quotes")
    if not isinstance(data, dict):
        raise OutputError(f"expected a JSON object, got {type(data).__name__}",
                          "schema_violation")
    props = json_schema.get("properties", {})
    if props and any(k not in props for k in data):
        data = {k: v for k, v in data.items() if k in props}
        repairs.append("extra_keys")
    if _fix_enum_case(data, _enum_fields(json_schema)):
        repairs.append("enum_case")
    return data, repairs


def _violation(e: ValueError) -> str:
    """The first error of a pydantic ``ValidationError`` (``errors()``), where it is."""
    errors = getattr(e, "errors", None)
    first = errors()[0] if callable(errors) else {"loc": (), "msg": str(e)}
    loc = ".".join(map(str, first["loc"])) or "(object)"
    return f"schema violation at `{loc}`: {first['msg']}"


_AST_LOCK = threading.Lock()


def _python_literal(raw: str) -> Any:
    """A Python-repr dict ({'a': 'b', 'c': None}) is a common near-miss; literal_eval is safe."""
    if not raw.startswith("{"):
        return None
    import ast  # not at import: an exported package's import time is a budget

    try:
        with _AST_LOCK:  # CPython < 3.11.8 / 3.12 corrupts ast.parse run in parallel threads
            return ast.literal_eval(raw)  # ("AST constructor recursion depth mismatch")
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None  # TypeError: an unhashable key or set member, {[1]: 2}


_EnumField = tuple[str, bool, frozenset[str], dict[str, str]]
"""An enum field of a schema: its key, whether it is a list of enum values, the values, and
each value by its lower-case form."""
_ENUM_FIELDS: dict[int, tuple[Mapping[str, Any], tuple[_EnumField, ...]]] = {}


def _enum_fields(json_schema: Mapping[str, Any]) -> tuple[_EnumField, ...]:
    """The schema's enum fields, found once per schema object (an evaluation or a service sends
    the same one with every answer): rebuilding a 77-label enum's lookup table for every answer
    was over half of parsing a triage answer."""
    hit = _ENUM_FIELDS.get(id(json_schema))
    if hit is not None and hit[0] is json_schema:
        return hit[1]
    if len(_ENUM_FIELDS) > 64:
        _ENUM_FIELDS.clear()
    fields = tuple((k, is_list, frozenset(vals), {v.lower(): v for v in vals})
                   for k, is_list, vals in enum_fields(json_schema))
    _ENUM_FIELDS[id(json_schema)] = (json_schema, fields)
    return fields


def _fix_enum_case(data: dict[str, Any], fields: tuple[_EnumField, ...]) -> bool:
    fixed = False
    for k, is_list, vals, by_lower in fields:
        if k not in data:
            continue
        if is_list and isinstance(data[k], list):
            new = [_fix_case(x, vals, by_lower) for x in data[k]]
        else:
            new = _fix_case(data[k], vals, by_lower)
        fixed |= new != data[k]
        data[k] = new
    return fixed


def _fix_case(x: Any, vals: frozenset[str], by_lower: dict[str, str]) -> Any:
    if isinstance(x, str) and x not in vals and x.lower() in by_lower:
        return by_lower[x.lower()]
    return x


def _clip(text: str, n: int = 80) -> str:
    t = text.replace("\n", " ")
    return repr(t if len(t) <= n else t[:n] + "…")
