"""Reading a JSON Schema as pydantic emits it: local ``$ref`` followed, enum values found
through ``$ref`` and ``anyOf``. The parser, the offline baseline, the fake model, the schema
diff and the authoring scaffold all read schemas through these.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MAX_HOPS = 32
"""How many ``$ref`` one node may follow before it is left as it is (a cycle)."""


def resolve(node: Any, root: Mapping[str, Any]) -> Any:
    """``node`` with its local ``$ref`` followed (``#/$defs/X``, any JSON pointer into
    ``root``), the keys beside the ``$ref`` kept over the target's. A remote ``$ref``
    (``other.json#/X``) is left in place for the caller to refuse or ignore; a node that is
    no object (``true``) comes back as it is."""
    for _ in range(MAX_HOPS):
        ref = node.get("$ref") if isinstance(node, dict) else None
        if not isinstance(ref, str) or not ref.startswith("#"):
            break
        target: Any = root
        for part in filter(None, ref[1:].split("/")):
            key = part.replace("~1", "/").replace("~0", "~")
            target = target.get(key, {}) if isinstance(target, Mapping) else {}
        node = {**(target if isinstance(target, Mapping) else {}),
                **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def enum_values(node: Any, root: Mapping[str, Any]) -> list[str] | None:
    """The string values of the enum ``node`` allows (through ``$ref`` and the first ``anyOf``
    alternative that has some, e.g. an optional enum), or None."""
    node = resolve(node, root)
    if not isinstance(node, dict):
        return None
    if "enum" in node:
        return [v for v in node["enum"] if isinstance(v, str)]
    for alt in node.get("anyOf", []):
        vals = enum_values(alt, root)
        if vals:
            return vals
    return None


def enum_fields(schema: Mapping[str, Any]) -> list[tuple[str, bool, list[str]]]:
    """Each top-level property of ``schema`` that takes enum values: its key, whether it is a
    list of them, and the values, in the schema's order."""
    out = []
    for key, prop in schema.get("properties", {}).items():
        items = prop.get("items") if prop.get("type") == "array" else None
        vals = enum_values(items or prop, schema)
        if vals:
            out.append((key, bool(items), vals))
    return out
