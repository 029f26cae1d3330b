"""Model text → a schema-valid object, or an ``InvalidOutput`` with its kind.

The parser itself (what it repairs, what it refuses) is :mod:`promptgov._portable._parse`, the
one an exported package parses with too; this binds it to a pydantic model and to promptgov's
errors.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import BaseModel

from promptgov._portable import _parse
from promptgov.errors import InvalidOutput


def parse_output(text: str, model: type[BaseModel]) -> tuple[dict[str, Any], list[str]]:
    """Parse and validate ``text`` against ``model``; returns ``(object, repairs)``."""
    try:
        obj, repairs = _parse.parse_output(text, _json_schema(model), model.model_validate)
    except _parse.OutputError as e:
        raise InvalidOutput(str(e), kind=e.kind) from None
    return obj.model_dump(mode="json"), repairs


@lru_cache(maxsize=64)
def _json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """Once per schema, not per answer (~0.4 ms each time); the same object each time, which
    the parser's per-schema tables are keyed on."""
    return model.model_json_schema()
