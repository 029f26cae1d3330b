"""Reading a response schema for ``local/knn``: ``$ref``/``$defs``, ``anyOf`` with null, ``const``
alternatives and booleans resolved; enum values and their ``- <value>: <description>`` lines;
type and bound checks of a filled value; a demo answer's value at a field's path.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from promptgov._portable._jsonschema import resolve
from promptgov.errors import BadRequest
from promptgov.model._knn_params import MODEL_ID

_Schema = dict[str, Any]
"""A JSON Schema node (or a schema's root), as parsed from JSON: its values are any JSON."""

_DESC_LINE = re.compile(r"^[ \t]*[-*•][ \t]+`?([^`:\n]{1,120}?)`?[ \t]*:[ \t]*(\S.*?)[ \t]*$",
                        re.M)


def _value_descriptions(text: str) -> dict[str, str]:
    return {m.group(1).strip(): m.group(2) for m in _DESC_LINE.finditer(text or "")}


def _resolve(node: Any, root: _Schema) -> Any:
    node = resolve(node, root)
    ref = node.get("$ref") if isinstance(node, dict) else None
    if isinstance(ref, str) and not ref.startswith("#"):  # resolve() follows local ones only
        raise BadRequest(f"local/knn: only local $ref are supported, got {ref!r}",
                         model=MODEL_ID)
    return node


def _unwrap(node: Any, root: _Schema) -> tuple[_Schema, bool]:
    """The non-null alternative of ``node`` and whether null is allowed."""
    node = _resolve(node, root)
    if not isinstance(node, dict):
        return {}, False
    nullable = False
    for key in ("anyOf", "oneOf"):
        alts = node.get(key)
        if isinstance(alts, list) and not _has_const(alts, root):
            rest = [a for a in (_resolve(a, root) for a in alts) if a.get("type") != "null"]
            nullable = len(rest) < len(alts)
            if rest:  # several non-null alternatives: the first one is filled
                return _merge_first(node, key, rest[0], root, nullable)
            # every alternative null: the next key (which may reset nullable) and the type decide
    t = node.get("type")
    if isinstance(t, list):
        node, nullable = _drop_null_type(node, t)
    if "enum" in node and None in node["enum"]:
        nullable = True
    return node, nullable


def _drop_null_type(node: _Schema, types: list[Any]) -> tuple[_Schema, bool]:
    """``node`` with ``"null"`` out of its list of types (one type left: that type) and
    whether it was there."""
    rest = [x for x in types if x != "null"]
    return {**node, "type": rest[0] if len(rest) == 1 else rest}, "null" in types


def _has_const(alts: list[Any], root: _Schema) -> bool:
    """Whether an alternative is a ``const`` (then ``alts`` is an enum, for :func:`_enum_of`)."""
    return any("const" in _resolve(a, root) for a in alts if isinstance(a, dict))


def _merge_first(node: _Schema, key: str, first: Any, root: _Schema,
                 nullable: bool) -> tuple[_Schema, bool]:
    """``node`` without its ``key`` alternatives, merged with the unwrapped ``first`` of them
    (the outer description kept when the inner one has none)."""
    merged = {k: v for k, v in node.items() if k != key}
    inner, inner_nullable = _unwrap(first, root)
    merged.update(inner)
    merged.setdefault("description", node.get("description", ""))
    return merged, nullable or inner_nullable


def _enum_of(node: _Schema, root: _Schema) -> tuple[list[Any], dict[str, str]] | None:
    """Enum values of ``node`` and descriptions attached to them in the schema, or None."""
    if "enum" in node:
        return [v for v in node["enum"] if v is not None], {}
    if "const" in node:
        return [node["const"]], {}
    for key in ("anyOf", "oneOf"):
        consts = _const_alternatives(node.get(key, []), root)
        if consts is not None:
            return ([a["const"] for a in consts],
                    {str(a["const"]): a["description"] for a in consts if a.get("description")})
    if node.get("type") == "boolean":
        return [True, False], {}
    return None


def _const_alternatives(alts: Iterable[Any], root: _Schema) -> list[_Schema] | None:
    """The ``const`` alternatives when every alternative is a ``const`` or null, else None."""
    resolved = [_resolve(a, root) for a in alts if isinstance(a, dict)]
    if resolved and all("const" in a or a.get("type") == "null" for a in resolved):
        return [a for a in resolved if "const" in a]
    return None


_JSON_TYPES: dict[str, Any] = {"string": str, "integer": int, "number": (int, float),
                               "boolean": bool, "array": list, "object": dict}


def _type_ok(v: Any, t: Any) -> bool:
    if not isinstance(t, str) or t not in _JSON_TYPES:
        return True
    if isinstance(v, bool) and t != "boolean":
        return False
    return isinstance(v, _JSON_TYPES[t])


_MONEY = re.compile(r"amount|price|cost|fee|refund|total|balance|money|sum|payment|salary|"
                    r"spend|paid|charge", re.I)
_NAME_WORDS = re.compile(r"[a-z0-9]+")


def _words(name: str) -> set[str]:
    return set(_NAME_WORDS.findall(re.sub(r"([a-z])([A-Z])", r"\1 \2", name).lower()))


def _fits(v: Any, node: _Schema) -> bool:
    """Whether a filled value keeps the node's bounds (a number's range, a string's length and
    pattern); other values always fit."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return _number_fits(v, node)
    if isinstance(v, str):
        return _string_fits(v, node)
    return True


def _number_fits(v: float, node: _Schema) -> bool:
    return not (("minimum" in node and v < node["minimum"])
                or ("maximum" in node and v > node["maximum"])
                or ("exclusiveMinimum" in node and v <= node["exclusiveMinimum"])
                or ("exclusiveMaximum" in node and v >= node["exclusiveMaximum"]))


def _string_fits(v: str, node: _Schema) -> bool:
    if len(v) < node.get("minLength", 0) or len(v) > node.get("maxLength", 1 << 30):
        return False
    return "pattern" not in node or re.search(node["pattern"], v) is not None


_MISSING = object()


def _path_get(answer: Any, path: tuple[str, ...]) -> Any:
    for p in path:
        if not isinstance(answer, dict) or p not in answer:
            return _MISSING
        answer = answer[p]
    return answer
