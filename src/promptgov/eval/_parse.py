"""Model text → a schema-valid object, or an ``InvalidOutput`` with its kind.

Lenient where the intent is unambiguous (a fenced block, Python-style quotes, an unknown extra
key, an enum value in the wrong case), strict everywhere else: a truncated or non-JSON answer is
``invalid_json``, a well-formed object that breaks the contract is ``schema_violation``. Each
repair is reported so that a per-case record shows what the model actually did.
"""

from __future__ import annotations

import ast
import json
import re
import threading
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ValidationError

from promptgov.errors import InvalidOutput

_FENCE = re.compile(r"^\s*```[a-zA-Z0-9_-]*\s*\n?(.*?)\n?\s*```\s*$", re.S)


def parse_output(text: str, model: type[BaseModel]) -> tuple[dict[str, Any], list[str]]:
    """Parse and validate ``text`` against ``model``; returns ``(object, repairs)``."""
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
            raise InvalidOutput(f"not valid JSON: {why}: {_clip(text)}",
                                kind="invalid_json") from None
        repairs.append("single_quotes")
    if not isinstance(data, dict):
        raise InvalidOutput(f"expected a JSON object, got {type(data).__name__}",
                            kind="schema_violation")
    schema = _json_schema(model)
    props = schema.get("properties", {})
    extra = [k for k in data if k not in props]
    if extra and props:
        data = {k: v for k, v in data.items() if k in props}
        repairs.append("extra_keys")
    if _fix_enum_case(data, _enum_fields(model)):
        repairs.append("enum_case")
    try:
        obj = model.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(map(str, first["loc"])) or "(object)"
        raise InvalidOutput(f"schema violation at `{loc}`: {first['msg']}",
                            kind="schema_violation") from None
    return obj.model_dump(mode="json"), repairs


@lru_cache(maxsize=64)
def _json_schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema()  # ~0.4 ms each time: once per schema, not per answer


_AST_LOCK = threading.Lock()


def _python_literal(raw: str) -> Any:
    """A Python-repr dict ({'a': 'b', 'c': None}) is a common near-miss; literal_eval is safe."""
    if not raw.startswith("{"):
        return None
    try:
        with _AST_LOCK:  # CPython < 3.11.8 / 3.12 corrupts ast.parse run in parallel threads
            return ast.literal_eval(raw)  # ("AST constructor recursion depth mismatch")
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None  # TypeError: an unhashable key or set member, {[1]: 2}


def _enum_values(prop: dict[str, Any], defs: dict[str, Any]) -> list[str] | None:
    if "$ref" in prop:
        prop = defs.get(prop["$ref"].split("/")[-1], {})
    if "enum" in prop:
        return [v for v in prop["enum"] if isinstance(v, str)]
    for alt in prop.get("anyOf", []):
        vals = _enum_values(alt, defs)
        if vals:
            return vals
    return None


_EnumField = tuple[str, bool, frozenset[str], dict[str, str]]
"""An enum field of a schema: its key, whether it is a list of enum values, the values, and
each value by its lower-case form."""


@lru_cache(maxsize=64)
def _enum_fields(model: type[BaseModel]) -> tuple[_EnumField, ...]:
    """The schema's enum fields, found once per schema: rebuilding them (a 77-label enum's
    lookup table) for every answer was ~50 µs, over half of parsing a triage answer."""
    schema = _json_schema(model)
    defs = schema.get("$defs", {})
    fields = []
    for k, prop in schema.get("properties", {}).items():
        items = prop.get("items") if prop.get("type") == "array" else None
        vals = _enum_values(items or prop, defs)
        if vals:
            fields.append((k, bool(items), frozenset(vals), {v.lower(): v for v in vals}))
    return tuple(fields)


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
