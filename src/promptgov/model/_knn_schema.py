"""Reading a response schema for ``local/knn``: ``$ref``/``$defs``, ``anyOf`` with null, ``const``
alternatives and booleans resolved; enum values and their ``- <value>: <description>`` lines;
type and bound checks of a filled value; a demo answer's value at a field's path.
"""

from __future__ import annotations

import re
from typing import Any

from promptgov.errors import BadRequest
from promptgov.model._knn_params import MODEL_ID

_DESC_LINE = re.compile(r"^[ \t]*[-*•][ \t]+`?([^`:\n]{1,120}?)`?[ \t]*:[ \t]*(\S.*?)[ \t]*$",
                        re.M)


def _value_descriptions(text: str) -> dict[str, str]:
    return {m.group(1).strip(): m.group(2) for m in _DESC_LINE.finditer(text or "")}


def _resolve(node: Any, root: dict, depth: int = 0) -> Any:
    while isinstance(node, dict) and "$ref" in node and depth < 32:
        ref = node["$ref"]
        target: Any = root
        if not ref.startswith("#"):
            raise BadRequest(f"local/knn: only local $ref are supported, got {ref!r}",
                             model=MODEL_ID)
        for part in filter(None, ref[1:].split("/")):
            target = target.get(part.replace("~1", "/").replace("~0", "~"), {}) \
                if isinstance(target, dict) else {}
        extra = {k: v for k, v in node.items() if k != "$ref"}
        node = {**target, **extra}
        depth += 1
    return node


def _unwrap(node: Any, root: dict) -> tuple[dict, bool]:
    """The non-null alternative of ``node`` and whether null is allowed."""
    node = _resolve(node, root)
    if not isinstance(node, dict):
        return {}, False
    nullable = False
    for key in ("anyOf", "oneOf"):
        alts = node.get(key)
        if isinstance(alts, list) and not any("const" in _resolve(a, root) for a in alts
                                              if isinstance(a, dict)):
            rest = [a for a in (_resolve(a, root) for a in alts) if a.get("type") != "null"]
            nullable = len(rest) < len(alts)
            if rest:  # several non-null alternatives: the first one is filled
                merged = {k: v for k, v in node.items() if k != key}
                inner, n2 = _unwrap(rest[0], root)
                merged.update(inner)
                merged.setdefault("description", node.get("description", ""))
                return merged, nullable or n2
    t = node.get("type")
    if isinstance(t, list):
        nullable = "null" in t
        rest = [x for x in t if x != "null"]
        node = {**node, "type": rest[0] if len(rest) == 1 else rest}
    if "enum" in node and None in node["enum"]:
        nullable = True
    return node, nullable


def _enum_of(node: dict, root: dict) -> tuple[list, dict[str, str]] | None:
    """Enum values of ``node`` and descriptions attached to them in the schema, or None."""
    if "enum" in node:
        return [v for v in node["enum"] if v is not None], {}
    if "const" in node:
        return [node["const"]], {}
    for key in ("anyOf", "oneOf"):
        alts = [_resolve(a, root) for a in node.get(key, []) if isinstance(a, dict)]
        if alts and all("const" in a or a.get("type") == "null" for a in alts):
            consts = [a for a in alts if "const" in a]
            return ([a["const"] for a in consts],
                    {str(a["const"]): a["description"] for a in consts if a.get("description")})
    if node.get("type") == "boolean":
        return [True, False], {}
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


def _fits(v: Any, node: dict) -> bool:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        if "minimum" in node and v < node["minimum"]:
            return False
        if "maximum" in node and v > node["maximum"]:
            return False
        if "exclusiveMinimum" in node and v <= node["exclusiveMinimum"]:
            return False
        if "exclusiveMaximum" in node and v >= node["exclusiveMaximum"]:
            return False
    if isinstance(v, str):
        if len(v) < node.get("minLength", 0) or len(v) > node.get("maxLength", 1 << 30):
            return False
        if "pattern" in node and not re.search(node["pattern"], v):
            return False
    return True


_MISSING = object()


def _path_get(answer: Any, path: tuple[str, ...]) -> Any:
    for p in path:
        if not isinstance(answer, dict) or p not in answer:
            return _MISSING
        answer = answer[p]
    return answer
