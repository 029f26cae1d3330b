"""Reading YAML and JSONL files with errors that name the file, the line and the fix."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from promptgov.errors import WorkspaceError

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506 (safe)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise WorkspaceError(path, f"malformed YAML: {problem}", "fix the YAML syntax",
                             line=line) from None
    except UnicodeDecodeError:
        raise WorkspaceError(path, "not UTF-8 text", "save the file as UTF-8") from None
    if not isinstance(data, dict):
        raise WorkspaceError(path, "expected a mapping at the top level",
                             "write the file as `key: value` lines")
    return data


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line; a broken line raises
    :class:`WorkspaceError` naming it."""
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise WorkspaceError(path, f"invalid JSON: {e.msg} at column {e.colno}",
                                     "make each line one complete JSON object", line=n) from None
            if "\\u" in line and _has_lone_surrogate(line):
                raise WorkspaceError(path, "a \\uD800-\\uDFFF escape that is not a valid "
                                     "surrogate pair (not Unicode text; it cannot be hashed)",
                                     "remove the escape or write the character itself", line=n)
            if not isinstance(obj, dict):
                raise WorkspaceError(path, "expected a JSON object", "write {\"id\": ..., "
                                     "\"input\": {...}, \"expected\": ...}", line=n)
            yield n, obj


def _has_lone_surrogate(line: str) -> bool:
    try:
        json.dumps(json.loads(line), ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def pydantic_error(path: Path, err: Any) -> WorkspaceError:
    """Turn the first error of a pydantic ``ValidationError`` into a one-line WorkspaceError.

    An unknown field is reported before a missing one: ``sytem:`` is a typo of ``system:``, and
    "add the field `system`" would send the reader looking for the wrong line."""
    errors = err.errors()
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = ".".join(str(p) for p in first["loc"]) or "(top level)"
    fix = {
        "missing": f"add the field `{loc}`",
        "extra_forbidden": f"remove `{loc}` (unknown field; check its spelling)",
    }.get(first["type"], f"correct `{loc}`")
    if first["type"] == "extra_forbidden":
        import difflib

        missing = [".".join(str(p) for p in e["loc"]) for e in errors if e["type"] == "missing"]
        close = difflib.get_close_matches(loc, missing, n=1)
        if close:
            fix = f"rename `{loc}` to `{close[0]}` (unknown field; check its spelling)"
    return WorkspaceError(path, f"field `{loc}`: {first['msg']}", fix)
