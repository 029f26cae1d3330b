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
    """The mapping in YAML file ``path``: safe types only, no aliases (an alias bomb of a few KB
    expands to gigabytes wherever the value is walked: hashing, validation, rendering)."""
    try:
        data = _load(path.read_text(encoding="utf-8"))
    except _AliasFound as e:
        raise WorkspaceError(path, "YAML aliases (`*name`) are not allowed in workspace files",
                             "write the value out in full where it is used", line=e.line) from None
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


class _AliasFound(Exception):
    def __init__(self, line: int):
        self.line = line


def _load(text: str) -> Any:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if "*" in text:  # no `*`, no alias: skip the walk
            _no_alias(node)
        try:
            return _construct(node, loader)
        except _Unusual:
            return loader.construct_document(node)
    finally:
        loader.dispose()


_STR, _SEQ, _MAP = ("tag:yaml.org,2002:str", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:map")


class _Unusual(Exception):
    """A node the fast constructor leaves to PyYAML's (merge keys, !!set, !!binary...)."""


def _construct(node: yaml.Node, loader: Any) -> Any:
    """What ``loader.construct_document(node)`` gives for an alias-free document of plain
    maps, lists and scalars, without PyYAML's generic machinery (a third of a prompt file's
    load time). Scalars other than strings go through the safe constructor's own functions, so
    every value (ints, floats, bools, nulls, timestamps) is exactly the safe loader's."""
    if isinstance(node, yaml.ScalarNode):
        if node.tag == _STR:
            return node.value
        fn = loader.yaml_constructors.get(node.tag)
        if fn is None or node.tag == "tag:yaml.org,2002:binary":
            raise _Unusual
        return fn(loader, node)
    if isinstance(node, yaml.SequenceNode) and node.tag == _SEQ:
        return [_construct(n, loader) for n in node.value]
    if isinstance(node, yaml.MappingNode) and node.tag == _MAP:
        out = {}
        for k, v in node.value:
            if k.tag == "tag:yaml.org,2002:merge":
                raise _Unusual
            key = _construct(k, loader)
            try:
                out[key] = _construct(v, loader)
            except TypeError:  # an unhashable key: the safe loader's error
                raise _Unusual from None
        return out
    raise _Unusual


def _no_alias(root: yaml.Node) -> None:
    """Raise :class:`_AliasFound` if a node is reachable twice (what an alias composes to).
    Each node is visited once, so a bomb costs no more than its text."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            raise _AliasFound(node.start_mark.line + 1)
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                stack += (k, v)
        elif isinstance(node, yaml.SequenceNode):
            stack += node.value


def read_toml(path: Path, fix: str) -> dict[str, Any]:
    """The table in TOML file ``path``; unreadable text is a one-line error ending in ``fix``."""
    import tomllib  # here: a workspace without TOML files does not pay for it in `check`

    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise WorkspaceError(path, "not UTF-8 text", fix) from None
    except tomllib.TOMLDecodeError as e:
        raise WorkspaceError(path, f"invalid TOML: {e}", fix) from None


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line; a broken line raises
    :class:`WorkspaceError` naming it."""
    with path.open("rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise WorkspaceError(path, f"not UTF-8 text (byte {e.start + 1} of the line)",
                                     "save the file as UTF-8", line=n) from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                msg = e.msg.removesuffix(" at")  # "Invalid control character at"
                raise WorkspaceError(path, f"invalid JSON: {msg} at column {e.colno}",
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
