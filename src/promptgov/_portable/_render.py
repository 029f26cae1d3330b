"""The user-template fill of an exported package: ``{{ name }}`` and ``{{ name.attr.attr }}``,
nothing else.

It renders exactly what jinja2 renders for those (text kept as written, values through
``str()``, ``a.b`` as attribute then item, a missing variable an error as under jinja2's
``StrictUndefined``); ``promptgov export`` proves it on every evalset input before it writes a
wheel and refuses a template with any other construct. The system message and few-shot demos
are rendered by jinja2 at export and shipped as messages, so the package needs no template engine.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_EXPR = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\s*\}\}")
_OTHER = re.compile(r"\{[{%#]")


class UndefinedVariable(ValueError):
    """The context does not supply a variable (or attribute) the template uses."""


def unsupported(template: str) -> str | None:
    """The first construct this renderer does not support (``{% for``, a filter...), or None."""
    rest = _EXPR.sub("", template)
    m = _OTHER.search(rest)
    return rest[m.start():m.start() + 30].split("\n")[0] if m else None


def variables(template: str) -> list[str]:
    """Top-level variable names the template uses, sorted."""
    return sorted({m.group(1).split(".")[0] for m in _EXPR.finditer(template)})


def render(template: str, context: Mapping[str, Any]) -> str:
    """``template`` with every ``{{ expression }}`` replaced by its value; raises
    :class:`UndefinedVariable` for one ``context`` does not supply."""

    def value(m: re.Match[str]) -> str:
        expr = m.group(1)
        head, *attrs = expr.split(".")
        if head not in context:
            raise UndefinedVariable(f"undefined variable {head!r} (the input supplies "
                                    f"{', '.join(map(repr, context)) or 'nothing'})")
        v = context[head]
        for a in attrs:
            v = _attr(v, a, expr)
        return str(v)

    return _EXPR.sub(value, template)


def _attr(obj: Any, name: str, expr: str) -> Any:
    # jinja2's Environment.getattr: the attribute first, then the item
    try:
        return getattr(obj, name)
    except AttributeError:
        pass
    try:
        return obj[name]
    except (TypeError, LookupError):
        raise UndefinedVariable(f"undefined variable {expr!r}: {type(obj).__name__} has no "
                                f"{name!r}") from None
