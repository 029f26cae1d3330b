"""``governance/lock.json``: the content hashes of every prompt, schema and evalset version.

The lock is written by :func:`write_lock` (``promptgov lock``) and read by
:mod:`promptgov.governance._check`. It holds the reference values a check compares the workspace
with (content hashes, render fingerprints, the policy), never a shortcut that says a file is
unchanged: that lives in untracked local state (``_derived.py``), out of a commit's reach.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

from promptgov._version import RENDER_VERSION

LOCK_FILE = "governance/lock.json"
LOCK_VERSION = 1


def file_sha(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
        h.update(b"\0")
    return "sha256:" + h.hexdigest()


def tooling() -> dict[str, Any]:
    """Versions of what turns files into hashes; a change re-derives every hash."""
    return dict(_tooling())


@functools.cache
def _tooling() -> tuple[tuple[str, Any], ...]:
    # Read once per process: importlib.metadata parses the METADATA files (~4 ms a call), and
    # `check` asks once per file.
    return (("pydantic", metadata.version("pydantic")), ("jinja2", metadata.version("jinja2")),
            ("render", RENDER_VERSION))


def read_lock(root: Path) -> dict[str, Any]:
    path = root / LOCK_FILE
    if not path.exists():
        return {"lock_version": LOCK_VERSION, "tooling": {}, "schemas": {}, "evalsets": {},
                "prompts": {}}
    from promptgov.errors import WorkspaceError

    fix = "restore it from git (`git checkout governance/lock.json`) and run `promptgov lock`"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise WorkspaceError(LOCK_FILE, "not UTF-8 text", fix) from None
    except json.JSONDecodeError as e:
        raise WorkspaceError(LOCK_FILE, f"invalid JSON: {e.msg}", fix, line=e.lineno) from None
    problem = _shape_problem(data)
    if problem:
        raise WorkspaceError(LOCK_FILE, f"not a promptgov lock: {problem}", fix)
    lock: dict[str, Any] = data  # parsed JSON that _shape_problem found to be a lock
    for k in ("schemas", "evalsets", "prompts"):
        lock.setdefault(k, {})
    return lock


# What each entry must hold (key → type); other keys are allowed (older or newer locks).
_ENTRY: dict[str, dict[str, type]] = {
    "schemas": {"file": str, "hash": str, "json_schema": dict},
    "evalsets": {"dir": str, "hash": str, "count": int},
    "prompts": {"file": str, "kind": str, "content_hash": str, "render_fingerprint": str},
}


def _shape_problem(data: object) -> str | None:
    """Why ``data`` is not a lock (None: it is): every verdict of ``check`` indexes into it."""
    if not isinstance(data, dict):
        return f"the top level is a JSON {type(data).__name__}, not an object"
    for kind, keys in _ENTRY.items():
        table = data.get(kind, {})
        if not isinstance(table, dict):
            return f"`{kind}` is not an object"
        for ref, entry in table.items():
            if not isinstance(entry, dict):
                return f"{kind}.{ref} is not an object"
            for k, t in keys.items():
                if not isinstance(entry.get(k), t):
                    return f"{kind}.{ref}.{k} is missing or not a {t.__name__}"
    pol = data.get("policy")
    if pol is not None and not (isinstance(pol, dict) and isinstance(pol.get("hash"), str)
                                and isinstance(pol.get("content"), dict)):
        return "`policy` is not {\"hash\": ..., \"content\": {...}}"
    if not isinstance(data.get("tooling", {}), dict):
        return "`tooling` is not an object"
    return None


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON (sorted keys, one entry a line) via a temp file + rename: never half written."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` via a temp file in the same folder + rename: never half written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; these files are shared through git
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_lock(root: Path, lock: dict[str, Any]) -> None:
    write_json_atomic(root / LOCK_FILE, {**lock, "lock_version": LOCK_VERSION})
