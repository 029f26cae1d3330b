"""Model text → a validated schema object, as promptgov's evaluations parse it.

Lenient where the intent is unambiguous (a fenced block, Python-style quotes, an unknown extra
key, an enum value in the wrong case), strict everywhere else: a truncated or non-JSON answer is
``invalid_json``, a well-formed object that breaks the contract ``schema_violation``. The same
rules as ``promptgov.eval._parse``, so that an answer accepted in the workbench is accepted here.
"""

from __future__ import annotations

import json
import re
import threading
from typing import TYPE_CHECKING, Any, TypeVar

from ._errors import InvalidOutput

if TYPE_CHECKING:
    from pydantic import BaseModel

T = TypeVar("T", bound="BaseModel")
_FENCE = re.compile(r"^\s*```[a-zA-Z0-9_-]*\s*\n?(.*?)\n?\s*```\s*$", re.S)


def parse_output(text: str, model: type[T], json_schema: dict[str, Any]) -> T:
    """Parse ``text`` and validate it with ``model`` (whose JSON Schema is ``json_schema``)."""
    from pydantic import ValidationError

    raw = text.strip()
    m = _FENCE.match(raw)
    if m:
        raw = m.group(1).strip()
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as e:
        data = _python_literal(raw)
        if data is None:
            why = f"{e.msg} at char {e.pos}" if isinstance(e, json.JSONDecodeError) else \
                f"{type(e).__name__}: {str(e)[:80]}"
            raise InvalidOutput(f"not valid JSON: {why}: {_clip(text)}",
                                kind="invalid_json") from None
    if not isinstance(data, dict):
        raise InvalidOutput(f"expected a JSON object, got {type(data).__name__}",
                            kind="schema_violation")
    props = json_schema.get("properties", {})
    if props and any(k not in props for k in data):
        data = {k: v for k, v in data.items() if k in props}
    _fix_enum_case(data, props, json_schema.get("$defs", {}))
    try:
        return model.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(map(str, first["loc"])) or "(object)"
        raise InvalidOutput(f"schema violation at `{loc}`: {first['msg']}",
                            kind="schema_violation") from None


_AST_LOCK = threading.Lock()


def _python_literal(raw: str) -> Any:
    """A Python-repr dict ({'a': 'b', 'c': None}) is a common near-miss; literal_eval is safe."""
    if not raw.startswith("{"):
        return None
    import ast

    try:
        with _AST_LOCK:  # CPython < 3.11.8 / 3.12 corrupts ast.parse run in parallel threads
            return ast.literal_eval(raw)  # ("AST constructor recursion depth mismatch")
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None


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


def _fix_enum_case(data: dict[str, Any], props: dict[str, Any], defs: dict[str, Any]) -> None:
    for k, prop in props.items():
        items = prop.get("items") if prop.get("type") == "array" else None
        vals = _enum_values(items or prop, defs)
        if not vals or k not in data:
            continue
        lower = {v.lower(): v for v in vals}

        def fix(x: Any, vals: list[str] = vals, lower: dict[str, str] = lower) -> Any:
            if isinstance(x, str) and x not in vals and x.lower() in lower:
                return lower[x.lower()]
            return x

        data[k] = [fix(x) for x in data[k]] if items and isinstance(data[k], list) else fix(data[k])


def _clip(text: str, n: int = 80) -> str:
    t = text.replace("\n", " ")
    return repr(t if len(t) <= n else t[:n] + "…")
